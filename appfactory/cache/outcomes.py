"""What a cached call's lookup came to, as X-Cache, Cache-Status and the request line say it."""

from __future__ import annotations

from flask import g

HIT, MISS, STALE, BYPASS = "HIT", "MISS", "STALE", "BYPASS"
CACHE_NAME = "aigen"  # the cache's name in Cache-Status (RFC 9211)

# Cache-Status parameters for an outcome whose detail was not noted (a failed computation: MISS).
_DEFAULT_DETAIL = {
    HIT: "hit",
    MISS: "fwd=uri-miss",
    STALE: "fwd=stale",
    BYPASS: "fwd=bypass; detail=redis-unavailable",
}


def cache_status() -> str | None:
    """HIT, MISS, STALE or BYPASS for the cached call this request made, if any."""
    return g._get_current_object().get("cache_status")


def note_status(outcome: str) -> None:
    """Record the request's cache outcome (X-Cache, the request line)."""
    g._get_current_object().cache_status = outcome


def note_detail(*params: str) -> None:
    """Record the request's Cache-Status parameters (`"hit", "ttl=12"`), beside its outcome."""
    g._get_current_object().cache_detail = "; ".join(params)


def clear_detail() -> None:
    """Forget a noted detail: a lookup starts."""
    g._get_current_object().pop("cache_detail", None)


def cache_status_header() -> str | None:
    """The Cache-Status value for this request's cached call, if it made one."""
    current = g._get_current_object()
    if (status := current.get("cache_status")) is None:
        return None
    detail = current.get("cache_detail") or _DEFAULT_DETAIL[status]
    return f"{CACHE_NAME}; {detail}"
