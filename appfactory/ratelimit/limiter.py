"""Flask-Limiter: one budget per client, exact across workers through Redis; policies and exemptions."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limit, RequestLimit
from limits import RateLimitItem, RateLimitItemPerMinute
from prometheus_client import Counter
from redis import Redis

from appfactory.compat.flask_limiter import limiter_base
from appfactory.ratelimit import tokens
from appfactory.ratelimit.headers import breach_message, policy_of, write_headers
from appfactory.redis.client import client_options, cluster_options, is_cluster
from appfactory.web.addresses import budget_key

# Blueprints that get a budget of their own instead of the default one: name -> config key.
POLICIES = {"ai": "RATE_LIMIT_AI_PER_MINUTE"}
EXEMPT_PATHS = ("/health", "/metrics", "/openapi.json", "/docs")  # operators' and readers' pages

limited_total = Counter(
    "aigen_ratelimit_limited_total", "Requests refused with 429 by a rate limit", ["policy"]
)


def _no_key() -> int | None:
    return None


# Which API key the request presented, as the service's key check says (count_keys_by).
_presented_key_id: Callable[[], int | None] = _no_key


def count_keys_by(presented_key_id: Callable[[], int | None]) -> None:
    """Budget a request per API key: `presented_key_id()` is the id of the key it presented, None when
    it presented none (or one that was refused). Until told, every client is its address."""
    global _presented_key_id
    _presented_key_id = presented_key_id


def client_key() -> str:
    """The API key the request presented (unless refused), else the client's address (an IPv6 one by
    its /64), as TRUSTED_PROXIES resolved it."""
    key_id = _presented_key_id()
    if key_id is not None:
        return f"key:{key_id}"
    return budget_key(request.remote_addr)


def count_failed_authentication() -> int | None:
    """Count a refused key against its address's own tight budget (AUTH_FAILURES_PER_MINUTE):
    None while the budget lasts, else the seconds until it allows another try."""
    if not limiter.enabled:
        return None
    item = RateLimitItemPerMinute(current_app.config["AUTH_FAILURES_PER_MINUTE"])
    address = budget_key(request.remote_addr)
    if limiter.limiter.hit(item, "auth-failures", address):
        return None
    reset_at = limiter.limiter.get_window_stats(item, "auth-failures", address).reset_time
    return max(1, math.ceil(reset_at - time.time()))


def failures_left() -> bool:
    """Whether the address may still fail to authenticate, counting nothing: asked before a key is
    looked up, so a guesser past its budget costs the database nothing."""
    if not limiter.enabled:
        return True
    item = RateLimitItemPerMinute(current_app.config["AUTH_FAILURES_PER_MINUTE"])
    return limiter.limiter.test(item, "auth-failures", budget_key(request.remote_addr))


def retry_in(item: RateLimitItem, *identifiers: str) -> int:
    """Whole seconds until the window of `item` for `identifiers` takes another hit."""
    reset_at = limiter.limiter.get_window_stats(item, *identifiers).reset_time
    return max(1, math.ceil(reset_at - time.time()))


@functools.cache
def per_minute(config_key: str) -> Callable[[], str]:
    """A limit provider reading `config_key` (requests per minute) from the current app."""

    def provider() -> str:
        config = current_app.config
        return f"{config.get(config_key) or config['RATE_LIMIT_PER_MINUTE']}/minute"

    return provider


@functools.cache
def _scope(config_key: str, name: str) -> Callable[[str], str]:
    """The budget's name: its own when `config_key` is set, else the default budget, shared."""

    def scope(_endpoint: str) -> str:
        return name if current_app.config.get(config_key) else "default"

    return scope


def _request_identifier() -> str:
    # Unknown paths and methods under /api/ and /v1/ have no endpoint; name them so they are limited too.
    req = request._get_current_object()
    if req.endpoint:
        return req.endpoint
    return "api" if req.path.startswith(("/api/", "/v1/")) else ""


def _breach_message() -> str:
    return breach_message(limiter.current_limit)


def _count_breach(limit: RequestLimit) -> None:
    limited_total.labels(policy_of(limit)).inc()


def policy_limit(config_key: str, name: str) -> Any:
    """A budget named `name` of `config_key` requests per minute, for a view or a blueprint."""
    return limiter.shared_limit(
        per_minute(config_key), scope=_scope(config_key, name), error_message=_breach_message
    )


class ServiceLimiter(limiter_base()):  # type: ignore[misc]
    """Flask-Limiter, with its storage (None while disabled) in `app.extensions["ratelimit"]`."""

    def init_app(self, app: Flask) -> None:
        # Flask-Limiter registers its own request hooks here: appfactory/pipeline.py binds it at their place.
        super().init_app(app)
        app.extensions["ratelimit"] = self.storage if self.enabled else None


limiter = ServiceLimiter(
    client_key,
    default_limits=[
        Limit(
            per_minute("RATE_LIMIT_PER_MINUTE"),
            scope="default",
            shared=True,
            error_message=_breach_message,
        )
    ],
    request_identifier=_request_identifier,
    on_breach=_count_breach,
)
for _name, _key in POLICIES.items():
    limiter.limit_manager.add_blueprint_limit(_name, policy_limit(_key, _name))


@limiter.request_filter
def _exempt() -> bool:
    path = request.path
    return any(path == base or path.startswith(base + "/") for base in EXEMPT_PATHS)


def write_limit_headers(response: Response) -> Response:
    """After-request hook: the rate-limit headers, from the hit's own window (no second round trip),
    and the token budget's beside them when the request reserved tokens (ratelimit/tokens.py)."""
    write_headers(response, limiter.current_limit)
    if (reservation := tokens.noted()) is not None:
        for _, policy, left in reservation.headers():
            response.headers.add("RateLimit-Policy", policy)
            if left is not None:
                response.headers.add("RateLimit", left)
    return response


def limiter_config(config: dict[str, Any], redis: Redis | None = None) -> dict[str, Any]:
    """Flask-Limiter keys derived from the service's settings; counters share the app's Redis pool."""
    options: dict[str, Any] = {
        "workers": config["WEB_CONCURRENCY"],
        "retry_after": config["REDIS_RETRY_AFTER_S"],
        "key_prefix": f"{config['CACHE_NAMESPACE']}:rl",
    }
    if is_cluster(config):  # limits' cluster storage makes its own client: with the same timeouts
        options.update(cluster_options(client_options(config)))
    elif redis is not None:  # its connections already carry the service's short timeouts
        options["connection_pool"] = redis.connection_pool
    return {
        "RATELIMIT_STORAGE_URI": f"aigen+{config.get('REDIS_URL') or 'memory://'}",
        "RATELIMIT_STORAGE_OPTIONS": options,
        "RATELIMIT_STRATEGY": "sliding-window-counter",
        # Written by write_limit_headers from the hit's own result (Flask-Limiter would ask Redis again).
        "RATELIMIT_HEADERS_ENABLED": False,
        "RATELIMIT_SWALLOW_ERRORS": True,
    }


def storage_name() -> str:
    """'redis', 'memory' or 'memory-fallback' ('disabled' when RATELIMIT_ENABLED is false)."""
    storage = current_app.extensions.get("ratelimit")
    if storage is None:
        return "disabled"
    return getattr(storage, "mode", "memory")
