"""The one seam where the rate limiter's Redis round trip reads ahead what the request will need, and
a fresh cache entry answers the request on the view's behalf, before the view runs.

A cache HIT would cost two Redis round trips: the limiter's counting script, then the cache's GET. A
view marked `@answers_fresh_hits(entry_key, answer)` names, before it runs, the entry it will read;
identity asks for the API keys' revocation version the same way (`read_along`):

    plan      (before-request, before the limiter)  entry_key() -> the entry; a ReadAhead on the request
    the limiter's storage                           wanted() -> the ReadAhead, its `keys` read in the
                                                    script; ahead.deliver(values) -> what it found
    identity  (before-request, after the limiter)   found(version key) -> whether a key was revoked
    answer    (before-request, after identity)      a fresh entry -> answer(value), the view never runs
    the cache's store (the view ran: stale, absent) take(redis_key) -> the raw value, no second GET

The limiter, the cache and identity all speak to this module, never to each other. One name on `g`
carries the request's ReadAhead; everything else about it is in that object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, g, request

from appfactory.web.errors import ApiError

# Attribute a marked view carries: (entry_key, answer).
_MARK = "fresh_hit"
_SLOT = "read_ahead"  # the one name on g
# The methods a marked view serves itself, after the key check. Never OPTIONS: identity lets it pass
# without a key (a preflight carries none), and Flask answers it with Allow, not the view's body.
_ANSWERED_METHODS = frozenset({"GET", "HEAD"})


class ReadAhead:
    """One request's read-ahead: the Redis keys the limiter's round trip reads for others, what it
    found, and the cache entry (if any) whose fresh value answers the request."""

    __slots__ = ("keys", "read", "found", "entry_key", "entry_redis_key", "answer")

    def __init__(self) -> None:
        self.keys: list[str] = []  # Redis keys to read, in order
        self.read = False  # whether a round trip read them; `found` then maps each to its bytes or None
        self.found: dict[str, bytes | None] = {}
        self.entry_key: str | None = None  # the cache's key, `prefix:suffix`, of a marked view's entry
        self.entry_redis_key: str | None = None
        self.answer: Callable[[Any], Any] | None = None

    def deliver(self, values: list[bytes | None]) -> None:
        """What the limiter's round trip read for `keys`, in their order (None: no such key)."""
        self.read, self.found = True, dict(zip(self.keys, values, strict=True))

    def entry_raw(self) -> bytes | None:
        return self.found.get(self.entry_redis_key) if self.entry_redis_key else None


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


def _request_read_ahead() -> ReadAhead:
    notes = g._get_current_object()
    ahead = notes.get(_SLOT)
    if ahead is None:
        ahead = ReadAhead()
        setattr(notes, _SLOT, ahead)
    return ahead


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
    ahead = _request_read_ahead()
    ahead.entry_key, ahead.answer = key, marked[1]
    ahead.entry_redis_key = current_app.extensions["response_cache"].store.redis_key(key)
    ahead.keys.append(ahead.entry_redis_key)


def read_along(redis_key: str) -> None:
    """Before the limiter: ask its round trip to read `redis_key` too (identity's key version)."""
    _request_read_ahead().keys.append(redis_key)


def found(redis_key: str) -> tuple[bool, bytes | None]:
    """After the limiter: (True, value) when its round trip read `redis_key`, else (False, None)."""
    ahead = g._get_current_object().get(_SLOT)
    if ahead is None or not ahead.read:
        return False, None
    return redis_key in ahead.found, ahead.found.get(redis_key)


def wanted() -> ReadAhead | None:
    """For the limiter's storage: the read-ahead whose `keys` its round trip should also read;
    it hands what it read to `ahead.deliver(values)`."""
    ahead = g._get_current_object().get(_SLOT)  # one proxy lookup (hot path: docs/architecture.md)
    return None if ahead is None or ahead.read else ahead


def answer() -> Any:
    """Before-request hook, after the limiter's: a fresh entry answers the request; None lets the view run."""
    ahead = g._get_current_object().get(_SLOT)
    if ahead is None or not ahead.read or ahead.answer is None:
        return None
    raw = ahead.entry_raw()
    if raw is None:
        return None
    found_fresh, value = current_app.extensions["response_cache"].answer_fresh(ahead.entry_key, raw)
    if not found_fresh:
        return None  # stale or unreadable: the view serves it, through the cache's usual way
    return ahead.answer(value)


def take(redis_key: str) -> tuple[bool, bytes | None]:
    """For the cache's store: (True, raw) once, when this request's round trip already read `redis_key`."""
    ahead = g.get(_SLOT)
    if ahead is None or not ahead.read or ahead.entry_redis_key != redis_key:
        return False, None
    raw = ahead.entry_raw()
    ahead.entry_redis_key = None  # once
    return True, raw
