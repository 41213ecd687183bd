"""The rate-limit headers of every limited response, and the message of a 429."""

from __future__ import annotations

import math
import time

from flask import Response
from flask_limiter import RequestLimit

from appfactory.compat.limits import Window
from appfactory.ratelimit.storage import last_window


def policy_of(limit: RequestLimit) -> str:
    """The budget's name ('default', 'ai'): the scope the limit counts under."""
    return str(limit.request_args[-1])


def breach_message(current: RequestLimit | None) -> str:
    """The 429's message for the breached `current` limit: its size, its window, when to come back."""
    if current is None:
        return "Too many requests; slow down and retry later."
    state = window(current)
    seconds = max(1, math.ceil(state.reset_at - time.time()))
    return f"Rate limit of {state.limit} requests per {state.expiry} s exceeded; retry in {seconds} s."


def window(limit: RequestLimit) -> Window:
    """The window the request's hit left, or (public way, another storage) Flask-Limiter's query of it."""
    known = last_window(limit.key)
    if known is None:
        known = Window(limit.limit.amount, limit.remaining, limit.reset_at, limit.limit.get_expiry())
    return known


def write_headers(response: Response, current: RequestLimit | None) -> Response:
    """X-RateLimit-*, RateLimit-Policy, RateLimit and, on a 429, Retry-After for `current`
    (unless the 429 is another budget's, which set its own: failed authentications)."""
    if current is None:
        return response
    state = window(current)
    reset_in = max(0, math.ceil(state.reset_at - time.time()))
    policy = policy_of(current)
    add = response.headers.add  # not set: nothing else writes these, and set scans every header
    add("X-RateLimit-Limit", str(state.limit))
    add("X-RateLimit-Remaining", str(state.remaining))
    add("X-RateLimit-Reset", str(math.ceil(state.reset_at)))
    add("RateLimit-Policy", f'"{policy}";q={state.limit};w={state.expiry}')
    add("RateLimit", f'"{policy}";r={state.remaining};t={reset_in}')
    if response.status_code == 429 and "Retry-After" not in response.headers:  # another budget's 429
        response.headers["Retry-After"] = str(max(1, reset_in))
    return response
