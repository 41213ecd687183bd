"""The read-ahead: Redis keys the rate limiter's round trip reads, on one request, for whoever asked.

A cache HIT would cost two Redis round trips: the limiter's counting script, then the cache's GET.
Instead, what will need a Redis key later in the request names it before the limiter runs, and the
limiter's script reads it in the same round trip:

    before the limiter   read_along(redis_key)   identity: the API keys' revocation version
                         request_read_ahead()    the cache's early answer: the entry a view will read
    the limiter's storage                        wanted() -> the ReadAhead, its `keys` read in the
                                                 script; ahead.deliver(values) -> what it found
    after the limiter    found(redis_key)        identity: whether a key was revoked
                                                 the early answer and the cache's store (cache/early.py)

The limiter and the cache never import each other: both speak to this module. One name on `g`
carries the request's ReadAhead; everything else about it is in that object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import g

SLOT = "read_ahead"  # the one name on g


class ReadAhead:
    """One request's read-ahead: the Redis keys the limiter's round trip reads for others, what it
    found, and the cache entry (if any) whose fresh value answers the request (cache/early.py)."""

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


def request_read_ahead() -> ReadAhead:
    """The request's ReadAhead, made on first use."""
    notes = g._get_current_object()
    ahead = notes.get(SLOT)
    if ahead is None:
        ahead = ReadAhead()
        setattr(notes, SLOT, ahead)
    return ahead


def read_along(redis_key: str) -> None:
    """Before the limiter: ask its round trip to read `redis_key` too (identity's key version)."""
    request_read_ahead().keys.append(redis_key)


def found(redis_key: str) -> tuple[bool, bytes | None]:
    """After the limiter: (True, value) when its round trip read `redis_key`, else (False, None)."""
    ahead = g._get_current_object().get(SLOT)
    if ahead is None or not ahead.read:
        return False, None
    return redis_key in ahead.found, ahead.found.get(redis_key)


def wanted() -> ReadAhead | None:
    """For the limiter's storage: the read-ahead whose `keys` its round trip should also read;
    it hands what it read to `ahead.deliver(values)`."""
    ahead = g._get_current_object().get(SLOT)  # one proxy lookup (hot path: docs/architecture.md)
    return None if ahead is None or ahead.read else ahead
