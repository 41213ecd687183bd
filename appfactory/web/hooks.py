"""Per-request bookkeeping: request id, timing headers, one log line and the request metrics.

`start` is the first before-request hook and `finisher(app)` the last after-request one
(appfactory/pipeline.py registers them)."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response, request

from appfactory.observability import metrics
from appfactory.observability.logging import emit
from appfactory.observability.timing import current_trace, server_timing, start_trace
from appfactory.observability.tracing import TRACE_ID_KEY

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

log = logging.getLogger(__name__)
access_log = logging.getLogger("appfactory.access")


def new_request_id() -> str:
    """32 random hex digits. Not uuid4: its os.urandom is a system call per request, and an id
    needs uniqueness, not secrecy (random reseeds itself in every forked worker)."""
    return f"{random.getrandbits(128):032x}"


def start() -> None:
    """Before-request: the request's trace, under the caller's request id when it is a sane one, else
    the request span's trace id when tracing is on (docs/tracing.md), else a new one."""
    environ = request.environ
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    if not _SANE_REQUEST_ID.fullmatch(incoming):
        incoming = environ.get(TRACE_ID_KEY) or new_request_id()
    start_trace(incoming)


def request_fields(req: Request, response: Response, duration_ms: float) -> dict[str, Any]:
    """What the request line and the slow-request warning say about a request."""
    return {
        "method": req.method,
        "path": req.path,
        "status": response.status_code,
        "duration_ms": round(duration_ms, 2),
        "remote_addr": req.remote_addr,
        "cache": response.headers.get("X-Cache"),
    }


def _observer(app: Flask) -> Callable[[Request, Response, float, str], None]:
    """Record metrics and log the request line, with the app's settings bound once."""
    slow_ms = app.config["SLOW_REQUEST_MS"]
    metrics_enabled = app.config["METRICS_ENABLED"]

    def observe(req: Request, response: Response, duration_ms: float, request_id: str) -> None:
        if metrics_enabled:
            rule = req.url_rule
            route = rule.rule if rule else None
            metrics.observe_request(req.method, route, response.status_code, duration_ms / 1000.0)
        slow = duration_ms > slow_ms
        if slow or access_log.isEnabledFor(logging.INFO):
            fields = request_fields(req, response, duration_ms)
            emit(access_log, logging.INFO, "request", fields, request_id=request_id)
            if slow:
                slow_fields = {**fields, "threshold_ms": slow_ms}
                emit(access_log, logging.WARNING, "Slow request detected", slow_fields, request_id=request_id)

    return observe


def finisher(app: Flask) -> Callable[[Response], Response]:
    """The after-request hook that measures the request: metrics, the request line and the headers."""
    observe = _observer(app)

    def finish(response: Response) -> Response:
        trace = current_trace() or start_trace(new_request_id())  # a hook before ours answered
        started, request_id = trace.started, trace.request_id
        try:
            took_ms = (time.perf_counter() - started) * 1000.0
            observe(request._get_current_object(), response, took_ms, request_id)
        except Exception:  # metrics or a log line are never worth a failed request
            log.warning("Could not record the request", exc_info=True)
        # Measured after the log line and metrics, so the header counts what they cost.
        total = (time.perf_counter() - started) * 1000.0
        headers = response.headers
        # add, not set: nothing else writes these, and set scans every header first.
        headers.add("X-Request-ID", request_id)
        headers.add("X-Process-Time", f"{total:.2f}ms")
        headers.add("Server-Timing", server_timing(total, trace.spans))
        headers.add("X-Content-Type-Options", "nosniff")
        if "HTTP_AUTHORIZATION" in request.environ and "Cache-Control" not in headers:
            headers.add("Cache-Control", "no-store")  # an answer to a key is that key's alone
        return response

    return finish
