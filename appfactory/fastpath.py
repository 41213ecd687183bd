"""The one seam where the rate limiter's Redis round trip reads a cache entry ahead, and a fresh entry
answers the request on the view's behalf, before the view runs.

A cache HIT would cost two Redis round trips: the limiter's counting script, then the cache's GET. A
view marked `@answers_fresh_hits(entry_key, answer)` names, before it runs, the entry it will read:

    plan      (before-request, before the limiter)  entry_key() -> the entry; a ReadAhead on the request
    the limiter's storage                           wanted() -> the ReadAhead, its Redis key read in
                                                    the script; ahead.deliver(raw) -> what it found
    answer    (before-request, after the limiter)   a fresh entry -> answer(value), the view never runs
    the cache's store (the view ran: stale, absent) take(redis_key) -> the raw value, no second GET

The limiter and the cache both speak to this module, never to each other. One name on `g` carries the
request's ReadAhead; everything else about it is in that object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, g, request

from appfactory.web.errors import ApiError

# Attribute a marked view carries: (entry_key, answer).
_MARK = "fresh_hit"
_SLOT = "read_ahead"  # the one name on g


class ReadAhead:
    """One request's read-ahead: the entry its view will read, and what the limiter's round trip found."""

    __slots__ = ("key", "redis_key", "answer", "read", "raw")

    def __init__(self, key: str, redis_key: str, answer: Callable[[Any], Any]) -> None:
        self.key = key  # the cache's key, `prefix:suffix`
        self.redis_key = redis_key
        self.answer = answer
        self.read = False  # whether a round trip read it; `raw` is then its bytes, or None (absent)
        self.raw: bytes | None = None

    def deliver(self, raw: bytes | None) -> None:
        """What the limiter's round trip read for `redis_key` (None: no such entry)."""
        self.read, self.raw = True, raw


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
    view = current_app.view_functions.get(request.endpoint)  # type: ignore[arg-type]
    marked = getattr(view, _MARK, None)
    if marked is None:
        return
    try:
        key = marked[0]()
    except ApiError:
        return
    redis_key = current_app.extensions["response_cache"].store.redis_key(key)
    setattr(g._get_current_object(), _SLOT, ReadAhead(key, redis_key, marked[1]))


def wanted() -> ReadAhead | None:
    """For the limiter's storage: the read-ahead whose `redis_key` its round trip should also read;
    it hands what it read to `ahead.deliver(raw)`."""
    ahead = g._get_current_object().get(_SLOT)  # one proxy lookup (hot path: docs/architecture.md)
    return None if ahead is None or ahead.read else ahead


def answer() -> Any:
    """Before-request hook, after the limiter's: a fresh entry answers the request; None lets the view run."""
    ahead = g._get_current_object().get(_SLOT)
    if ahead is None or not ahead.read or ahead.raw is None:
        return None
    found, value = current_app.extensions["response_cache"].answer_fresh(ahead.key, ahead.raw)
    if not found:
        return None  # stale or unreadable: the view serves it, through the cache's usual way
    return ahead.answer(value)


def take(redis_key: str) -> tuple[bool, bytes | None]:
    """For the cache's store: (True, raw) once, when this request's round trip already read `redis_key`."""
    ahead = g.get(_SLOT)
    if ahead is None or not ahead.read or ahead.redis_key != redis_key:
        return False, None
    g.pop(_SLOT)
    return True, ahead.raw
