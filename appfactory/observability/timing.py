"""Where a request's time went: cache, database, upstream; sent as Server-Timing."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, has_request_context


class RequestTrace:
    """One request's id, start and time spans: what its headers and its log line report."""

    __slots__ = ("request_id", "started", "spans")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = time.perf_counter()
        self.spans: dict[str, float] = {}


def start_trace(request_id: str) -> RequestTrace:
    """Begin the current request's trace (the first before-request hook)."""
    trace = g.trace = RequestTrace(request_id)
    return trace


def current_trace() -> RequestTrace | None:
    """The current request's trace, if a request is being served."""
    return g._get_current_object().get("trace") if has_request_context() else None


def record(name: str, ms: float) -> None:
    """Add `ms` milliseconds to the request's `name` bucket."""
    trace = g._get_current_object().get("trace") if has_request_context() else None  # hot: inlined
    if trace is not None:
        spans = trace.spans
        spans[name] = spans.get(name, 0.0) + ms


_F = TypeVar("_F", bound=Callable[..., Any])


class timed:  # noqa: N801 (used like a function: `with timed("cache"):` or `@timed("db")`)
    """Time the block, or every call of the decorated function, into the request's `name` bucket
    (cache, db, upstream).

    A class, not @contextmanager: it runs on hot paths, where a generator per block costs more.
    """

    __slots__ = ("name", "started")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        record(self.name, (time.perf_counter() - self.started) * 1000.0)

    def __call__(self, function: _F) -> _F:
        name = self.name  # one decorator serves every thread: the start time stays a local

        @functools.wraps(function)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                record(name, (time.perf_counter() - started) * 1000.0)

        return timed_call  # type: ignore[return-value]


def server_timing(total_ms: float, spans: dict[str, float] | None) -> str:
    """The Server-Timing header value for a request with these `spans` (its trace's)."""
    parts = [f"{name};dur={ms:.2f}" for name, ms in (spans or {}).items()]
    parts.append(f"app;dur={total_ms:.2f}")
    return ", ".join(parts)
