"""Flask-Caching bound to Redis when REDIS_URL is set, SimpleCache otherwise; X-Cache and Cache-Status."""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask, Response, current_app
from flask_caching import Cache

from appfactory.cache.flow import ResponseCache
from appfactory.cache.outcomes import cache_status, cache_status_header
from appfactory.cache.stats import Counters
from appfactory.cache.stores import SIMPLE_CACHE_KEYS, LocalStore, RedisStore

cache = Cache()


def cache_config(config: dict[str, Any], client: redis.Redis | None = None) -> dict[str, Any]:
    """Flask-Caching keys derived from the service's settings; Redis shares the service's client."""
    common = {
        "CACHE_DEFAULT_TIMEOUT": config["CACHE_DEFAULT_TTL"],
        "CACHE_KEY_PREFIX": f"{config['CACHE_NAMESPACE']}:cache:",
    }
    if client is None:
        return {**common, "CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": SIMPLE_CACHE_KEYS}
    return {**common, "CACHE_TYPE": "RedisCache", "CACHE_REDIS_HOST": client}


def init_cache(app: Flask) -> None:
    """Bind Flask-Caching and the response cache (stores, counters) to the app."""
    redis_state = app.extensions.get("redis")
    client = redis_state.client if redis_state is not None else None
    cache.init_app(app, config=cache_config(app.config, client))
    backend = app.extensions["cache"][cache]
    namespace = app.config["CACHE_NAMESPACE"]
    # A miss waits for another worker's computation at most as long as the slowest upstream call.
    lock_s = app.config["AI_TIMEOUT_S"] + 5
    if redis_state is None:
        state = ResponseCache(LocalStore(backend, "simple"), None, Counters(), lock_s)
    else:
        store = RedisStore(backend, client, redis_state.breaker, namespace)
        counters = Counters(client, redis_state.breaker, f"{namespace}:stats")
        state = ResponseCache(store, redis_state.breaker, counters, lock_s, _version_ttl(app.config))
    app.extensions["response_cache"] = state


def _version_ttl(config: dict) -> int:
    """How long a version outlives a write: longer than any entry written before it can live (its
    TTL, jitter and stale share), so no old entry meets a version that Redis expired and forgot."""
    longest = max(
        config[name]
        for name in ("CACHE_DEFAULT_TTL", "AI_CACHE_TTL", "TEMPLATES_CACHE_TTL", "USER_CACHE_TTL")
    )
    return int(longest * 2) + 60


def backend_name() -> str:
    """'redis', 'simple' or 'bypass' (Redis configured but not answering)."""
    redis_state = current_app.extensions.get("redis")
    if redis_state is None:
        return "simple"
    return "redis" if redis_state.breaker.healthy else "bypass"


def x_cache_header(response: Response) -> Response:
    """After-request: X-Cache, the outcome of the request's cached call, and Cache-Status (RFC 9211),
    its detail (none: no headers)."""
    if (status := cache_status()) is not None:
        response.headers.add("X-Cache", status)  # not set: nothing else writes it
        response.headers.add("Cache-Status", cache_status_header())
    return response
