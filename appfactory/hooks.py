"""Per-request bookkeeping: request id, timing headers."""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, g, request

from appfactory.timing import server_timing

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _start() -> None:
    g.start = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def elapsed_ms() -> float:
    """Milliseconds since the request started."""
    return (time.perf_counter() - g.get("start", time.perf_counter())) * 1000.0


def _finish(response: Response) -> Response:
    total = elapsed_ms()
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    response.headers["X-Process-Time"] = f"{total:.2f}ms"
    response.headers["Server-Timing"] = server_timing(total)
    return response


def register_hooks(app: Flask) -> None:
    """Install the request hooks; the timer starts first and the headers are written last."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    # after_request functions run last-registered first: index 0 runs after every other one.
    app.after_request_funcs.setdefault(None, []).insert(0, _finish)
