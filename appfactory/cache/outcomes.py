"""What a cached call's lookup came to, as X-Cache and the request line say it."""

from __future__ import annotations

from flask import g

HIT, MISS, STALE, BYPASS = "HIT", "MISS", "STALE", "BYPASS"


def cache_status() -> str | None:
    """HIT, MISS, STALE or BYPASS for the cached call this request made, if any."""
    return g._get_current_object().get("cache_status")


def note_status(outcome: str) -> None:
    """Record the request's cache outcome (X-Cache, the request line)."""
    g._get_current_object().cache_status = outcome
