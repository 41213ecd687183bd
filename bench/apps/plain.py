"""The plain assembly: the service's libraries wired with their defaults, as a user would build it.

Flask-Limiter on Redis with headers, a Flask-Caching RedisCache `@cached` route, and one
python-json-logger line per request from after_request. Read from the environment directly,
like a single-file app would: REDIS_URL, CACHE_NAMESPACE, RATE_LIMIT_PER_MINUTE.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from flask import Flask, Response, g, request
from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from pythonjsonlogger.json import JsonFormatter

_NAMESPACE = os.environ.get("CACHE_NAMESPACE", "plain")
_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = Flask(__name__)
cache = Cache(
    app,
    config={
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": _REDIS_URL,
        "CACHE_KEY_PREFIX": f"{_NAMESPACE}:plain:cache:",
    },
)
limiter = Limiter(
    get_remote_address,
    app=app,
    default_limits=[f"{os.environ.get('RATE_LIMIT_PER_MINUTE', '60')}/minute"],
    storage_uri=_REDIS_URL,
    headers_enabled=True,
    key_prefix=f"{_NAMESPACE}:plain:rl",
)

log = logging.getLogger("plain.access")
_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
log.addHandler(_handler)
log.setLevel(logging.INFO)
log.propagate = False


@app.before_request
def _start() -> None:
    g.start = time.perf_counter()


@app.after_request
def _log(response: Response) -> Response:
    duration_ms = (time.perf_counter() - g.start) * 1000.0
    log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(duration_ms, 2),
        },
    )
    return response


@app.get("/hello")
@cache.cached(timeout=300)
def hello() -> dict:
    return {"message": "hello"}


@app.get("/health/live")
@limiter.exempt
def live() -> dict:
    return {"status": "alive"}
