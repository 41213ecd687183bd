"""The extension instances, and the one place that binds them to an app, in the order they run."""

from __future__ import annotations

from flask import Flask

from appfactory import fastpath
from appfactory.cache import cache, init_cache
from appfactory.db.engine import db
from appfactory.observability import metrics
from appfactory.ratelimit import limiter, limiter_config
from appfactory.redis.client import redis_client

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
    if app.extensions["response_cache"].shared:
        # The before-request hooks around the limiter's: plan which cache entry its Redis round trip
        # reads for the view, then answer from that entry when it is fresh (appfactory/fastpath.py).
        app.before_request(fastpath.plan)
        limiter.init_app(app)
        app.before_request(fastpath.answer)
    else:
        limiter.init_app(app)
    metrics.init_app(app)
