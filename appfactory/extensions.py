"""The extension instances, and the one place that binds them to an app.

Two register request hooks of their own when bound, Flask-Limiter and Flask-Cors: appfactory/pipeline.py
binds them, at their hooks' place among the others.
"""

from __future__ import annotations

from flask import Flask

from appfactory.cache import cache, init_cache
from appfactory.db.engine import db
from appfactory.identity.hooks import init_identity
from appfactory.observability import metrics
from appfactory.ratelimit import limiter, limiter_config
from appfactory.ratelimit.tokens import init_token_budgets
from appfactory.redis.client import redis_client

__all__ = ["cache", "db", "init_cors", "init_extensions", "limiter", "redis_client"]

# What a browser script may read of a cross-origin answer (CORS_ORIGINS).
EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Process-Time",
    "X-Cache",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "Location",
    "Server-Timing",
]


def init_extensions(app: Flask) -> None:
    """Bind the extensions without request hooks of their own; none of them connects yet."""
    db.init_app(app)
    redis_client.init_app(app)
    redis_state = app.extensions["redis"]
    # After redis_client: the limiter's counters and the cache use its connection pool.
    for key, value in limiter_config(app.config, redis_state and redis_state.client).items():
        app.config.setdefault(key, value)
    init_cache(app)
    init_token_budgets(app)
    init_identity(app)
    metrics.init_app(app)


def init_cors(app: Flask) -> None:
    """Flask-Cors for the origins CORS_ORIGINS names (browsers elsewhere get no answer)."""
    from flask_cors import CORS

    CORS(
        app,
        origins=list(app.config["CORS_ORIGINS"]),
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
