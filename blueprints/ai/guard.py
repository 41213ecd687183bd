"""Every call to the model server goes through one guard per app: a token meter, a bulkhead and a breaker.

The meter (usage.py) reserves the call's worst case in tokens first (429 when the caller's budget is
spent) and settles its real usage at its end, whichever way it ends.

The bulkhead bounds the calls this worker holds at once (AI_MAX_CONCURRENCY); a call beyond the bound
waits AI_QUEUE_WAIT_MS for a slot (its wait is the request's `queue` in Server-Timing), then is
answered 503 `upstream_busy`, logged and counted. The breaker opens after
AI_BREAKER_FAILURES failures in a row that say the server is down (unreachable, timeouts, 5xx) and then
answers 503 `upstream_unavailable` at once for AI_BREAKER_COOLDOWN_S, letting one probe through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from appfactory.extensions import db
from appfactory.observability import tracing
from appfactory.observability.metrics import count_upstream_error, upstream_breaker_open
from appfactory.observability.timing import timed
from appfactory.resilience.breaker import Breaker
from appfactory.resilience.bulkhead import Bulkhead, Full
from appfactory.web.errors import ApiError
from blueprints.ai.providers.base import Completion, UpstreamError, Usage
from blueprints.ai.usage import Meter

log = logging.getLogger(__name__)


class UpstreamGuard:
    """`guard.call(fn)`: fn() within a bulkhead slot, unless the breaker is open; `guard.open_stream`
    the same for a streamed call."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.bulkhead = Bulkhead(config["AI_MAX_CONCURRENCY"], config["AI_QUEUE_WAIT_MS"] / 1000.0)
        self.breaker = Breaker(
            "Model server", config["AI_BREAKER_COOLDOWN_S"], threshold=config["AI_BREAKER_FAILURES"]
        )

    def call(self, fn: Callable[[], Completion], meter: Meter) -> Completion:
        """fn()'s completion; `meter.usage` is what it used once this returns or raises."""
        self._admit(meter)
        try:
            with timed("upstream"):
                result = fn()
        except BaseException as exc:
            self._finish(exc)
            meter.settle(None, None)
            raise
        self._finish(None)
        meter.settle(result.usage, result.text)
        return result

    def open_stream(
        self, pieces: Callable[[], Iterator[str | Usage]], meter: Meter, span: Any = tracing.NO_SPAN
    ) -> Admitted:
        """A streamed call, admitted now: a refusal (token budget, breaker, bulkhead, the model
        server's answer to the request) raises here, before the response starts. The slot and the
        tokens are held until the pieces end or the returned iterator is closed; `span`
        (tracing.model_stream) ends then too."""
        self._admit(meter)
        admitted = Admitted(self, meter, span)
        try:
            with timed("upstream"):  # until the first piece: what the client waits before any text
                admitted.start(pieces())
        except BaseException as exc:
            admitted._end(exc)
            raise
        return admitted

    def _admit(self, meter: Meter) -> None:
        meter.reserve()
        try:
            self._enter()
        except BaseException:
            meter.settle(None, None)
            raise

    def _enter(self) -> None:
        if not self.breaker.allow():
            count_upstream_error("breaker_open")
            tracing.event("breaker.refused", {"aigen.breaker.retry_in_s": round(self.breaker.retry_in(), 3)})
            raise ApiError(
                503,
                "The model server is unavailable; retry later.",
                "upstream_unavailable",
                retry_after=self.breaker.retry_in() or 1,
            )
        db.release_connection()  # a model call waits seconds: it holds no pooled database connection
        try:
            with timed("queue"):
                self.bulkhead.enter()
        except Full:
            count_upstream_error("busy")
            tracing.event("bulkhead.refused", {"aigen.bulkhead.slots": self.bulkhead.slots})
            log.warning(
                "Refused a generation: %d model calls in flight and none ended within %g s",
                self.bulkhead.slots,
                self.bulkhead.wait_s,
            )
            raise ApiError(
                503,
                "Too many generations are waiting on the model server; retry shortly.",
                "upstream_busy",
                retry_after=1,
            ) from None

    def _finish(self, error: BaseException | None) -> None:
        """Give the slot back; tell the breaker what the call said about the server."""
        self.bulkhead.leave()
        if isinstance(error, UpstreamError):
            count_upstream_error(error.kind)
            log.warning("Model server call failed: %s, answered %s %s", error.kind, error.status, error.code)
            if error.kind in UpstreamError.DOWN:
                self.breaker.failed(error)
                upstream_breaker_open.set(0 if self.breaker.healthy else 1)
                state = "closed" if self.breaker.healthy else "open"
                tracing.event("breaker.failure", {"aigen.breaker.state": state})
            else:
                self.breaker.succeeded()  # it answered: the server is up
        elif error is None:
            self.breaker.succeeded()
            upstream_breaker_open.set(0)

    def state(self) -> dict[str, Any]:
        """What /health reports: the breaker, and the calls in flight against the bound."""
        return {
            "breaker": "closed" if self.breaker.healthy else "open",
            "in_flight": self.bulkhead.in_flight,
            "max_concurrency": self.bulkhead.slots,
        }


class Admitted:
    """A streamed call's text pieces. The slot goes back and the tokens settle when they end, fail,
    or the iterator is closed (a client that left: it is charged what was sent): close it from the
    response's on-close, which runs even if never iterated. `usage` is what the call used, once over."""

    def __init__(self, guard: UpstreamGuard, meter: Meter, span: Any = tracing.NO_SPAN) -> None:
        self.guard, self.meter, self.span = guard, meter, span
        self.iterator: Iterator[str | Usage] = iter(())
        self.first: str | None = None
        self.received: list[str] = []
        self.reported: Usage | None = None
        self.done = False

    @property
    def usage(self) -> Usage | None:
        return self.meter.usage

    def start(self, iterator: Iterator[str | Usage]) -> None:
        """Wait for the first piece, so a refusal of the model server raises before any answer."""
        self.iterator = iterator
        self.first = self._next_text()

    def __iter__(self) -> Admitted:
        return self

    def __next__(self) -> str:
        if self.first is not None:
            piece, self.first = self.first, None
            return piece
        if self.done:
            raise StopIteration
        try:
            piece = self._next_text()
        except BaseException as exc:
            self._end(exc)
            raise
        if piece is None:
            self._end(None)
            raise StopIteration
        return piece

    def _next_text(self) -> str | None:
        """The next piece of text (None at the end), noting the usage the model server reports."""
        for item in self.iterator:
            if isinstance(item, Usage):
                self.reported = item
                continue
            self.received.append(item)
            return item
        return None

    def close(self) -> None:
        """Stop early: the model call ends (its connection closed), the slot goes back."""
        self._end(GeneratorExit())

    def _end(self, error: BaseException | None) -> None:
        if self.done:
            return
        self.done = True
        try:
            if (close := getattr(self.iterator, "close", None)) is not None:
                close()
        finally:
            self.guard._finish(error)
            failed_at_once = error is not None and not self.received
            self.meter.settle(self.reported, None if failed_at_once else "".join(self.received))
            self.span.end(error, self.reported)
