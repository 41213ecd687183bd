"""A request's Cache-Control, as the cache honours it (docs/cache.md, "Cache-Control and Cache-Status")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request


@dataclass(frozen=True)
class Control:
    """The request directives the cache acts on; parsed by werkzeug (`request.cache_control`)."""

    no_cache: bool = False  # answer fresh (compute, ignoring any entry) and store it
    no_store: bool = False  # neither read nor store
    max_age: int | None = None  # an entry older than this many seconds is not used
    only_if_cached: bool = False  # a fresh entry or 504 not_cached, never a computation

    @property
    def plain(self) -> bool:
        """No directive the cache acts on: the usual way (fresh, stale, single flight)."""
        return self == NONE

    @property
    def reads(self) -> bool:
        """Whether an entry may answer at all."""
        return not (self.no_cache or self.no_store)

    def accepts(self, written: float, at: float) -> bool:
        """Whether an entry written at `written` (Unix time) may answer at `at`: max-age bounds its age."""
        return self.reads and (self.max_age is None or at - written <= self.max_age)


NONE = Control()


def request_control() -> Control:
    """The directives of the request being served; none outside a request (the CLI's warm-up)."""
    if not has_request_context():
        return NONE
    header = request.cache_control
    max_age = header.max_age
    return Control(
        no_cache=bool(header.no_cache),
        no_store=bool(header.no_store),
        max_age=max(0, max_age) if isinstance(max_age, int) else None,
        only_if_cached=bool(header.only_if_cached),
    )


def written_at(entry: tuple[Any, ...], ttl: int) -> float:
    """When `entry` was written: stored with it; for an entry without it (ResponseCache.put), its soft
    expiry less the TTL (within the ±10% jitter)."""
    return entry[2] if len(entry) > 2 else entry[0] - ttl
