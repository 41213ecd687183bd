"""The import surface for extension instances, and the one place that binds them."""

from __future__ import annotations

from flask import Flask

from appfactory import metrics
from appfactory.cache import answer_read_ahead, cache, init_cache
from appfactory.db import db
from appfactory.ratelimit import limiter, limiter_config
from appfactory.redis_client import redis_client

__all__ = ["cache", "db", "init_extensions", "limiter", "redis_client"]


def init_extensions(app: Flask) -> None:
    """Bind every extension to the app; none of them connects yet."""
    db.init_app(app)
    redis_client.init_app(app)
    redis_state = app.extensions["redis"]
    # After redis_client: the limiter's counters and the cache use its connection pool.
    for key, value in limiter_config(app.config, redis_state and redis_state.client).items():
        app.config.setdefault(key, value)
    init_cache(app)
    limiter.init_app(app)
    if app.extensions["response_cache"].reads_ahead:
        # After the limiter's hook: a fresh entry its round trip read answers there, without the view.
        app.before_request(answer_read_ahead)
    metrics.init_app(app)
