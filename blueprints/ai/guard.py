"""Every call to the model server goes through one guard per app: a bulkhead and a breaker.

The bulkhead bounds the calls this worker holds at once (AI_MAX_CONCURRENCY); a call beyond the bound
waits AI_QUEUE_WAIT_MS for a slot (its wait is the request's `queue` in Server-Timing), then is
answered 503 `upstream_busy`, logged and counted. The breaker opens after
AI_BREAKER_FAILURES failures in a row that say the server is down (unreachable, timeouts, 5xx) and then
answers 503 `upstream_unavailable` at once for AI_BREAKER_COOLDOWN_S, letting one probe through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from appfactory.extensions import db
from appfactory.observability import tracing
from appfactory.observability.metrics import count_upstream_error, upstream_breaker_open
from appfactory.observability.timing import timed
from appfactory.resilience.breaker import Breaker
from appfactory.resilience.bulkhead import Bulkhead, Full
from appfactory.web.errors import ApiError
from blueprints.ai.providers.base import UpstreamError

log = logging.getLogger(__name__)


class UpstreamGuard:
    """`guard.call(fn)`: fn() within a bulkhead slot, unless the breaker is open."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.bulkhead = Bulkhead(config["AI_MAX_CONCURRENCY"], config["AI_QUEUE_WAIT_MS"] / 1000.0)
        self.breaker = Breaker(
            "Model server", config["AI_BREAKER_COOLDOWN_S"], threshold=config["AI_BREAKER_FAILURES"]
        )

    def call(self, fn: Callable[[], Any]) -> Any:
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
        try:
            with timed("upstream"):
                result = fn()
        except UpstreamError as exc:
            count_upstream_error(exc.kind)
            log.warning("Model server call failed: %s, answered %s %s", exc.kind, exc.status, exc.code)
            if exc.kind in UpstreamError.DOWN:
                self.breaker.failed(exc)
                upstream_breaker_open.set(0 if self.breaker.healthy else 1)
                state = "closed" if self.breaker.healthy else "open"
                tracing.event("breaker.failure", {"aigen.breaker.state": state})
            else:
                self.breaker.succeeded()  # it answered: the server is up
            raise
        finally:
            self.bulkhead.leave()
        self.breaker.succeeded()
        upstream_breaker_open.set(0)
        return result

    def state(self) -> dict[str, Any]:
        """What /health reports: the breaker, and the calls in flight against the bound."""
        return {
            "breaker": "closed" if self.breaker.healthy else "open",
            "in_flight": self.bulkhead.in_flight,
            "max_concurrency": self.bulkhead.slots,
        }
