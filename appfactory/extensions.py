"""The extension instances, and the one place that binds them to an app, in the order they run."""

from __future__ import annotations

from flask import Flask

from appfactory import fastpath
from appfactory.cache import cache, init_cache
from appfactory.db.engine import db
from appfactory.identity import hooks as identity
from appfactory.observability import metrics
from appfactory.ratelimit import limiter, limiter_config
from appfactory.redis.client import redis_client

__all__ = ["cache", "db", "init_extensions", "limiter", "redis_client"]

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
    """Bind every extension to the app; none of them connects yet."""
    db.init_app(app)
    redis_client.init_app(app)
    redis_state = app.extensions["redis"]
    # After redis_client: the limiter's counters and the cache use its connection pool.
    for key, value in limiter_config(app.config, redis_state and redis_state.client).items():
        app.config.setdefault(key, value)
    init_cache(app)
    identity.init_identity(app)
    # The before-request hooks, in order: who presents which key (the limiter counts per key); which
    # cache entry the limiter's Redis round trip reads for the view (appfactory/fastpath.py); the
    # limiter; whether the key still stands (a revoked key is refused before any cached answer); a
    # fresh entry answers the request.
    app.before_request(identity.identify)
    shared = app.extensions["response_cache"].shared
    if shared:
        app.before_request(fastpath.plan)
    limiter.init_app(app)
    app.before_request(identity.confirm)
    if shared:
        app.before_request(fastpath.answer)
    metrics.init_app(app)
    if app.config["CORS_ORIGINS"]:  # off unless origins are named: browsers elsewhere get no answer
        from flask_cors import CORS

        CORS(
            app,
            origins=list(app.config["CORS_ORIGINS"]),
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
