"""Flask-Caching bound to Redis when REDIS_URL is set, SimpleCache otherwise."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_caching import Cache

from appfactory.redis_client import client_options

cache = Cache()


def cache_config(config: dict[str, Any]) -> dict[str, Any]:
    """Flask-Caching keys derived from the service's settings."""
    prefix = f"{config['CACHE_NAMESPACE']}:cache:"
    if not config.get("REDIS_URL"):
        return {
            "CACHE_TYPE": "SimpleCache",
            "CACHE_DEFAULT_TIMEOUT": config["CACHE_DEFAULT_TTL"],
            "CACHE_KEY_PREFIX": prefix,
        }
    options = client_options(config)
    options.pop("retry", None)
    return {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": config["REDIS_URL"],
        "CACHE_KEY_PREFIX": prefix,
        "CACHE_DEFAULT_TIMEOUT": config["CACHE_DEFAULT_TTL"],
        "CACHE_OPTIONS": options,
    }


def backend_name() -> str:
    """'redis', 'simple' or 'bypass' (Redis configured but not answering)."""
    redis_state = current_app.extensions.get("redis")
    if redis_state is None:
        return "simple"
    return "redis" if redis_state.breaker.healthy else "bypass"
