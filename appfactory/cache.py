"""Flask-Caching bound to Redis when REDIS_URL is set, SimpleCache otherwise; the caching API."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

import orjson
import redis
from flask import Flask, Response, current_app, g, has_request_context, request
from flask_caching import Cache

from appfactory.cacheflow import BYPASS, HIT, MISS, STALE, NotCacheable, ResponseCache
from appfactory.cachestats import Counters
from appfactory.cachestore import LocalStore, RedisStore
from appfactory.errors import ApiError
from appfactory.redis_client import PIGGYBACK

__all__ = [
    "BYPASS",
    "HIT",
    "MISS",
    "STALE",
    "answer_read_ahead",
    "cache",
    "cache_response",
    "cache_status",
    "invalidate_cache",
    "read_ahead",
]

cache = Cache()

SIMPLE_CACHE_THRESHOLD = 1000

# Built once: json.dumps with options builds a new encoder per call.
_KEY_ENCODER = json.JSONEncoder(separators=(",", ":"), default=repr)

# Endpoint -> (the entry key its request will read, known before the view runs; what a fresh entry's
# value answers, if anything): see read_ahead.
_READ_AHEAD: dict[str, tuple[Callable[[], str], Callable[[Any], Any] | None]] = {}


def cache_config(config: dict[str, Any], client: redis.Redis | None = None) -> dict[str, Any]:
    """Flask-Caching keys derived from the service's settings; Redis shares the service's client."""
    common = {
        "CACHE_DEFAULT_TIMEOUT": config["CACHE_DEFAULT_TTL"],
        "CACHE_KEY_PREFIX": f"{config['CACHE_NAMESPACE']}:cache:",
    }
    if client is None:
        return {**common, "CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": SIMPLE_CACHE_THRESHOLD}
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
        state = ResponseCache(store, redis_state.breaker, counters, lock_s)
    app.extensions["response_cache"] = state
    if state.reads_ahead:
        # Before the rate limiter's hook (registered later), which reads the entry in its round trip.
        app.before_request(_plan_read_ahead)
    app.after_request(_x_cache_header)


def read_ahead(
    endpoint: str, answer: Callable[[Any], Any] | None = None
) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register `fn() -> entry key` for `endpoint`: the rate limiter's Redis call reads that entry.

    A cache hit then costs one Redis round trip instead of two. `fn` raises ApiError for bad input
    (the view answers it); any other key than the one the view reads only costs the saved trip.
    With `answer`, a fresh entry answers the request right after the limiter's check, without the
    view: `answer(value)` returns what the view would for that value served from the cache.
    """

    def decorator(fn: Callable[[], str]) -> Callable[[], str]:
        _READ_AHEAD[endpoint] = (fn, answer)
        return fn

    return decorator


def _plan_read_ahead() -> None:
    planned = _READ_AHEAD.get(request.endpoint)  # type: ignore[arg-type]
    if planned is None:
        return
    try:
        key = planned[0]()
    except ApiError:
        return
    state = g._get_current_object()
    state.read_ahead = (key, planned[1])
    setattr(state, PIGGYBACK, current_app.extensions["response_cache"].store.redis_key(key))


def answer_read_ahead() -> Any:
    """Before-request hook, after the rate limiter's: answer from a fresh entry its round trip read."""
    state = g._get_current_object()
    # This request's own plan, never one left in a shared `g`.
    key, answer = state.pop("read_ahead", (None, None))
    if answer is None:
        return None
    found, value = current_app.extensions["response_cache"].fresh_read_ahead(key.partition(":")[0], key)
    if not found:
        return None
    state.cache_status = HIT
    return answer(value)


def backend_name() -> str:
    """'redis', 'simple' or 'bypass' (Redis configured but not answering)."""
    redis_state = current_app.extensions.get("redis")
    if redis_state is None:
        return "simple"
    return "redis" if redis_state.breaker.healthy else "bypass"


def cache_status() -> str | None:
    """HIT, MISS, STALE or BYPASS for the cached call this request made, if any."""
    return g.get("cache_status")


def cache_response(
    ttl: int | str = "CACHE_DEFAULT_TTL",
    key_prefix: str = "default",
    key: Callable[..., str] | None = None,
    shared_only: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a function's result under `key_prefix` for `ttl` seconds (or the config key it names).

    The key is `key(*args, **kwargs)` when given, else a SHA-256 of the arguments (for a view also
    of the path and the sorted, decoded query string). Exceptions and non-2xx views are not stored.
    `shared_only`: the result changes with writes, so it is cached only where every worker and
    instance reads and invalidates the same entry (Redis); without Redis it is computed each time.
    """

    if not key_prefix or ":" in key_prefix:
        raise ValueError(f"key_prefix must be a non-empty name without ':', got {key_prefix!r}")

    def entry_key(*args: Any, **kwargs: Any) -> str:
        suffix = key(*args, **kwargs) if key is not None else _digest(args, kwargs, False)
        if has_request_context():  # the call that follows in this request need not hash again
            g.cache_entry_key = (key_prefix, _signature(args, kwargs), suffix)
        return f"{key_prefix}:{suffix}"

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            app = current_app._get_current_object()  # one proxy lookup each, not one per use
            state: ResponseCache = app.extensions["response_cache"]
            if shared_only and not state.shared:
                return fn(*args, **kwargs)  # a write in another process could not reach a local copy
            in_request = has_request_context()
            ctx_g = g._get_current_object() if in_request else None
            view = in_request and app.view_functions.get(request.endpoint) is wrapper
            known = ctx_g.pop("cache_entry_key", None) if ctx_g is not None else None
            if not view and known is not None and known[:2] == (key_prefix, _signature(args, kwargs)):
                suffix = known[2]
            else:
                suffix = key(*args, **kwargs) if key is not None else _digest(args, kwargs, view)
            seconds = ttl if isinstance(ttl, int) else app.config[ttl]
            if view:
                compute = functools.partial(_view_result, fn, *args, **kwargs)
            else:
                compute = functools.partial(fn, *args, **kwargs)
            status_of = ctx_g if ctx_g is not None else g  # g outside a request: the app context's
            status_of.cache_status = MISS
            try:
                status_of.cache_status, value = state.fetch(
                    key_prefix, f"{key_prefix}:{suffix}", seconds, compute
                )
            except NotCacheable as skip:
                return skip.value
            return Response(value[1], value[0], mimetype=value[2]) if view else value

        wrapper.entry_key = entry_key  # type: ignore[attr-defined]  # for read_ahead (not for views)
        return wrapper

    return decorator


def invalidate_cache(prefix: str, pattern: str = "*") -> int:
    """Delete the entries under `prefix` whose key matches the glob `pattern`; returns how many."""
    return current_app.extensions["response_cache"].invalidate(prefix, pattern)


def _signature(args: tuple, kwargs: dict) -> tuple:
    # Types too: 1 == True == 1.0, but each hashes to another key.
    return args, tuple(map(type, args)), kwargs, tuple(map(type, kwargs.values()))


def _digest(args: tuple, kwargs: dict, view: bool) -> str:
    parts: list[Any] = [args, sorted(kwargs.items())]
    if view:
        parts += [request.path, sorted(request.args.items(multi=True))]
    try:
        payload = orjson.dumps(parts, default=repr)
    except TypeError:  # orjson.JSONEncodeError: integers beyond 64 bits, keys that are not strings
        payload = _KEY_ENCODER.encode(parts).encode()
    return hashlib.sha256(payload).hexdigest()


def _view_result(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, bytes, str]:
    response = current_app.make_response(fn(*args, **kwargs))
    if not 200 <= response.status_code < 300 or response.is_streamed:
        raise NotCacheable(response)
    return response.status_code, response.get_data(), response.mimetype


def _x_cache_header(response: Response) -> Response:
    if (status := g.get("cache_status")) is not None:
        response.headers.add("X-Cache", status)  # not set: nothing else writes it
    return response
