"""The request pipeline: every hook a request passes through, registered here in the order it runs.

`before_the_view` and `after_the_view` below answer "what happens to a request, in what order"; the
modules they name only define their hooks. Two extensions register hooks of their own when they are
bound, Flask-Limiter (a before-, an after- and a teardown-request hook) and Flask-Cors (an after-request
hook): each is bound at its place in the lists (LIMITER, CORS). Flask-Limiter 4 has no switch to leave
its check to the caller (`auto_check` is gone), so where it is bound is where its check runs. Apart
from these: the database gives its connection back when the app context ends (db/engine.py), tracing
opens the request's span before every hook when it is on (observability/tracing.py), and the
OpenAI-compatible blueprint rewrites its own errors into OpenAI's shape (blueprints/openai_compat/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from appfactory.cache import early
from appfactory.cache.setup import x_cache_header
from appfactory.extensions import init_cors
from appfactory.identity import hooks as identity
from appfactory.identity.context import current_key_id
from appfactory.ratelimit import count_keys_by, limiter, write_limit_headers
from appfactory.web import hooks


class Bound:
    """An extension that registers its own hooks when `bind(app)` binds it, at its place in the lists."""

    def __init__(self, name: str, bind: Callable[[Flask], Any]) -> None:
        self.name, self.bind = name, bind

    def __repr__(self) -> str:
        return f"<{self.name}'s own hooks>"


LIMITER = Bound("Flask-Limiter", limiter.init_app)
CORS = Bound("Flask-Cors", init_cors)


def before_the_view(app: Flask) -> list[Any]:
    """Before the view, in the order they run; a hook that answers ends the request's way here."""
    early_answers = app.extensions["response_cache"].shared  # the entry is read ahead from Redis
    steps = [
        hooks.start,  # the request's trace: its id, its start
        identity.identify,  # which API key is presented: the limiter counts per key
        early.plan if early_answers else None,  # the cache entry the limiter's round trip reads too
        LIMITER,  # counts the hit (429 past the budget): one Redis round trip, reading ahead
        identity.confirm,  # whether the key still stands: a 401 comes before any cached answer
        early.answer if early_answers else None,  # a fresh entry answers; the view does not run
    ]
    return [step for step in steps if step is not None]


def after_the_view(app: Flask) -> list[Any]:
    """After the view (or an early answer, or an error's), in the order they run."""
    steps = [
        CORS if app.config["CORS_ORIGINS"] else None,  # what a browser may read of the answer
        write_limit_headers if app.config["RATELIMIT_ENABLED"] else None,  # X-RateLimit-*, RateLimit
        LIMITER,  # Flask-Limiter's own: its conditional deductions (its headers are off)
        x_cache_header,  # X-Cache
        hooks.finisher(app),  # metrics, the request line, X-Request-ID, X-Process-Time, Server-Timing
    ]
    return [step for step in steps if step is not None]


def register_pipeline(app: Flask) -> None:
    """Register every request hook of the app, in the order `before_the_view` and `after_the_view` say."""
    count_keys_by(current_key_id)  # the limiter's client: the key identity verified, else the address
    before, after = before_the_view(app), after_the_view(app)
    # Flask runs before-request hooks in the order they were registered, after-request hooks in the
    # reverse order. Flask-Limiter is bound once what runs before its check and what runs after its
    # after-request hook are registered, and before the rest.
    at, at_after = before.index(LIMITER), after.index(LIMITER)
    _register(app, app.after_request, reversed(after[at_after + 1 :]))
    _register(app, app.before_request, before[:at])
    LIMITER.bind(app)
    _register(app, app.before_request, before[at + 1 :])
    _register(app, app.after_request, reversed(after[:at_after]))


def _register(app: Flask, register: Callable[[Any], Any], steps: Any) -> None:
    for step in steps:
        if isinstance(step, Bound):
            step.bind(app)
        else:
            register(step)
