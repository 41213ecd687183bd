"""The caching API: `cache_response` for views and functions alike (built on `cache_view` for views and
`cache_call` for functions), `invalidate_cache`."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

import orjson
from flask import Response, current_app, has_request_context, request
from pydantic import BaseModel

from appfactory.cache.control import request_control
from appfactory.cache.flow import NotCacheable, ResponseCache
from appfactory.cache.outcomes import MISS, note_status


def _key_part(value: Any) -> Any:
    """What a key holds of a value JSON cannot: a parsed model's fields (defaults included), else repr."""
    if isinstance(value, BaseModel):
        return sorted(value.model_dump(mode="json").items())
    return repr(value)


# Built once: json.dumps with options builds a new encoder per call.
_KEY_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_key_part)


def cache_response(
    ttl: int | str = "CACHE_DEFAULT_TTL",
    key_prefix: str = "default",
    key: Callable[..., str] | None = None,
    shared_only: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a view's 2xx response or a function's result under `key_prefix` for `ttl` seconds.

    Called as the view of the request being served (under any decorators that wrap it), it caches as
    `cache_view`: keyed also on the path and the query; called any other way, as `cache_call`: keyed on
    the arguments only. `key`, `ttl` and `shared_only` as for those two. `invalidate_cache(key_prefix,
    pattern)` deletes the entries of either kind.
    """
    as_view = cache_view(ttl, key_prefix, key=key, shared_only=shared_only)
    as_call = cache_call(ttl, key_prefix, key=key, shared_only=shared_only)

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        view, call = as_view(fn), as_call(fn)

        @functools.wraps(fn)
        def cached(*args: Any, **kwargs: Any) -> Any:
            if _serves_request(cached):
                return view(*args, **kwargs)
            return call(*args, **kwargs)

        cached.entry_key = call.entry_key  # type: ignore[attr-defined]
        return cached

    return decorator


def cache_view(
    ttl: int | str = "CACHE_DEFAULT_TTL",
    key_prefix: str = "default",
    shared_only: bool = False,
    key: Callable[..., str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a view's 2xx response under `key_prefix` for `ttl` seconds (or the config key it names).

    The key is `key(*args, **kwargs)` when given, else a SHA-256 of the path, the view's arguments and
    its query. A parsed query (`query`, a model) enters by its fields with the defaults filled in, never
    the raw query string, so `limit=020`, `limit=%32%30` and no query at all are one entry, and a query
    the schema refuses never reaches the cache. A view without one is keyed on the normalized query
    string instead: its decoded parameters, sorted (`?b=2&a=1` is `?a=1&b=2`).
    `shared_only`: the response changes with writes, so it is cached only where every worker and
    instance reads and invalidates the same entry (Redis), each entry stamped with the versions its
    prefix and group had before it was computed (docs/cache.md#writes-are-never-hidden); without
    Redis the view runs every time.
    """
    _check_prefix(key_prefix)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def cached_view(*args: Any, **kwargs: Any) -> Any:
            state: ResponseCache = current_app.extensions["response_cache"]
            if shared_only and not state.shared:
                return view(*args, **kwargs)
            suffix = key(*args, **kwargs) if key is not None else _digest(args, kwargs, with_request=True)
            compute = functools.partial(_view_result, view, *args, **kwargs)
            try:
                status, body, mimetype = _fetch(
                    state, key_prefix, f"{key_prefix}:{suffix}", ttl, compute, versioned=shared_only
                )
            except NotCacheable as skip:
                return skip.value
            return Response(body, status, mimetype=mimetype)

        return cached_view

    return decorator


def cache_call(
    ttl: int | str = "CACHE_DEFAULT_TTL",
    key_prefix: str = "default",
    key: Callable[..., str] | None = None,
    shared_only: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a function's result under `key_prefix` for `ttl` seconds (or the config key it names).

    The key is `key(*args, **kwargs)` when given, else a SHA-256 of the arguments. Exceptions are not
    stored. `shared_only` as for `cache_view`. The wrapper's `entry_key(*args, **kwargs)` is the
    entry a call with those arguments reads (for `fastpath.answers_fresh_hits`).
    """
    _check_prefix(key_prefix)

    def entry_key(*args: Any, **kwargs: Any) -> str:
        suffix = key(*args, **kwargs) if key is not None else _digest(args, kwargs, with_request=False)
        return f"{key_prefix}:{suffix}"

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def cached_call(*args: Any, **kwargs: Any) -> Any:
            state: ResponseCache = current_app.extensions["response_cache"]
            if shared_only and not state.shared:
                return fn(*args, **kwargs)  # a write in another process could not reach a local copy
            compute = functools.partial(fn, *args, **kwargs)
            try:
                return _fetch(state, key_prefix, entry_key(*args, **kwargs), ttl, compute, shared_only)
            except NotCacheable as skip:  # the function's answer, not to be stored
                return skip.value

        cached_call.entry_key = entry_key  # type: ignore[attr-defined]
        return cached_call

    return decorator


def invalidate_cache(prefix: str, pattern: str = "*") -> int:
    """Delete the entries under `prefix` whose key matches the glob `pattern`; returns how many."""
    return current_app.extensions["response_cache"].invalidate(prefix, pattern)


def _check_prefix(key_prefix: str) -> None:
    if not key_prefix or ":" in key_prefix:
        raise ValueError(f"key_prefix must be a non-empty name without ':', got {key_prefix!r}")


def _fetch(
    state: ResponseCache,
    prefix: str,
    key: str,
    ttl: int | str,
    compute: Callable[[], Any],
    versioned: bool = False,
) -> Any:
    """The value for `key`, its outcome noted for X-Cache and Cache-Status (g outside a request: the app
    context's), as the request's Cache-Control allows (control.py). `versioned`: writes change it."""
    seconds = ttl if isinstance(ttl, int) else current_app.config[ttl]
    note_status(MISS)  # what X-Cache says should the computation fail
    outcome, value = state.fetch(prefix, key, seconds, compute, request_control(), versioned)
    note_status(outcome)
    return value


def _serves_request(wrapper: Callable[..., Any]) -> bool:
    """Whether `wrapper` is the view of the request being served, itself or under other decorators."""
    if not has_request_context():
        return False
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    while view is not None:
        if view is wrapper:
            return True
        view = getattr(view, "__wrapped__", None)
    return False


def _digest(args: tuple, kwargs: dict, with_request: bool) -> str:
    parts: list[Any] = [args, sorted(kwargs.items())]
    if with_request and has_request_context():
        parts.append(request.path)
        if not isinstance(kwargs.get("query"), BaseModel):  # a parsed query is in the arguments
            parts.append(sorted(request.args.items(multi=True)))
    try:
        payload = orjson.dumps(parts, default=_key_part)
    except TypeError:  # orjson.JSONEncodeError: integers beyond 64 bits, keys that are not strings
        payload = _KEY_ENCODER.encode(parts).encode()
    return hashlib.sha256(payload).hexdigest()


def _view_result(view: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, bytes, str]:
    response = current_app.make_response(view(*args, **kwargs))
    if not 200 <= response.status_code < 300 or response.is_streamed:
        raise NotCacheable(response)
    return response.status_code, response.get_data(), response.mimetype
