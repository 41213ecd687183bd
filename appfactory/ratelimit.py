"""Flask-Limiter: a default limit per client, Redis storage when configured."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_limiter import Limiter


def client_key() -> str:
    """The client's address (ProxyFix has already applied TRUSTED_PROXIES)."""
    return request.remote_addr or "unknown"


def _default_limit() -> str:
    return f"{current_app.config['RATE_LIMIT_PER_MINUTE']}/minute"


limiter = Limiter(client_key, default_limits=[_default_limit])


def limiter_config(config: dict[str, Any]) -> dict[str, Any]:
    """Flask-Limiter keys derived from the service's settings."""
    return {
        "RATELIMIT_STORAGE_URI": config.get("REDIS_URL") or "memory://",
        "RATELIMIT_STRATEGY": "sliding-window-counter",
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": f"{config['CACHE_NAMESPACE']}:rl",
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
    }


def storage_name() -> str:
    """'redis', 'memory' or 'memory-fallback'."""
    if not current_app.config.get("REDIS_URL"):
        return "memory"
    return "memory-fallback" if limiter._storage_dead else "redis"
