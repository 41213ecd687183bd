"""The early answer: a fresh cache entry answers a marked view's request before the view runs.

A view marked `@answers_fresh_hits(entry_key, answer)` names, before it runs, the entry it will read:

    plan    (before-request, before the limiter)    entry_key() -> the entry, added to the request's
                                                    read-ahead (appfactory/readahead.py)
    answer  (before-request, after the key check)   a fresh entry -> answer(value); the view never runs
    take    (the view ran: stale, absent)           the store takes the raw value read, no second GET

So a HIT costs the limiter's one Redis round trip. Where these run among the other hooks:
appfactory/pipeline.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, g, request

from appfactory.cache.control import NONE, Control, request_control
from appfactory.readahead import SLOT, request_read_ahead
from appfactory.web.errors import ApiError

# The Cache-Control an early answer serves: none, or only-if-cached (a fresh entry is what it asks for).
# Any other directive (no-cache, no-store, max-age) leaves the request to the view's way (control.py).
_ANSWERED_CONTROLS = frozenset({NONE, Control(only_if_cached=True)})
# Attribute a marked view carries: (entry_key, answer).
_MARK = "fresh_hit"
# The methods a marked view serves itself, after the key check. Never OPTIONS: identity lets it pass
# without a key (a preflight carries none), and Flask answers it with Allow, not the view's body.
_ANSWERED_METHODS = frozenset({"GET", "HEAD"})


def answers_fresh_hits(
    entry_key: Callable[[], str], answer: Callable[[Any], Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a view: a fresh cache entry `entry_key()` answers its request as `answer(value)`, before it.

    `entry_key` parses the request as the view will (an ApiError leaves the request to the view, which
    answers the bad input); `answer(value)` must return what the view returns for that cached value.
    """

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(view, _MARK, (entry_key, answer))
        return view

    return mark


def plan() -> None:
    """Before-request hook, before the limiter's: note the entry a marked view will read."""
    if request.method not in _ANSWERED_METHODS:
        return
    view = current_app.view_functions.get(request.endpoint)  # type: ignore[arg-type]
    marked = getattr(view, _MARK, None)
    if marked is None:
        return
    try:
        key = marked[0]()
    except ApiError:
        return
    ahead = request_read_ahead()
    ahead.entry_key, ahead.answer = key, marked[1]
    ahead.entry_redis_key = current_app.extensions["response_cache"].store.redis_key(key)
    ahead.keys.append(ahead.entry_redis_key)


def answer() -> Any:
    """Before-request hook, after the limiter's: a fresh entry answers the request; None lets the view run."""
    ahead = g._get_current_object().get(SLOT)
    if ahead is None or not ahead.read or ahead.answer is None:
        return None
    if request_control() not in _ANSWERED_CONTROLS:
        return None  # the view's way reads the same entry, from this round trip (take)
    raw = ahead.entry_raw()
    if raw is None:
        return None
    found_fresh, value = current_app.extensions["response_cache"].answer_fresh(ahead.entry_key, raw)
    if not found_fresh:
        return None  # stale or unreadable: the view serves it, through the cache's usual way
    return ahead.answer(value)


def take(redis_key: str) -> tuple[bool, bytes | None]:
    """For the cache's store: (True, raw) once, when this request's round trip already read `redis_key`."""
    ahead = g.get(SLOT)
    if ahead is None or not ahead.read or ahead.entry_redis_key != redis_key:
        return False, None
    raw = ahead.entry_raw()
    ahead.entry_redis_key = None  # once
    return True, raw
