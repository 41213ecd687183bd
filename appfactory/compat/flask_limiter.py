"""Flask-Limiter: its per-request work planned once per app and route.

Flask-Limiter works out on every request which limits apply (limit resolution, exemptions, meta
limits, ordering) and keeps its state in ordered sets; for this service the answer depends only on
the registered limits and the configuration read at start-up. `PlannedChecks` remembers that answer
(`ResolvedOnce`, a subclass of its private `LimitManager`) and, for routes whose limits are plain (no
decorators, meta limits, conditional deductions, costs or per-method limits), hits them straight away
in its private `_check_request_limit`; anything else goes through Flask-Limiter's own check. The
public way is Flask-Limiter's `Limiter` as it comes (docs/compat.md).
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import flask.wrappers
from flask import Flask, current_app, request
from flask_limiter import ExemptionScope, Limiter, RequestLimit
from flask_limiter._compat import request_context
from flask_limiter._extension import LimiterContext
from flask_limiter._limits import RuntimeLimit
from flask_limiter._manager import LimitManager
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_qualified_name
from werkzeug.local import LocalProxy

from appfactory.compat import private_way
from appfactory.resilience.pools import PoolExhausted

TESTED = "4.1.1"
PRIVATE = private_way("Flask-Limiter", TESTED)


class ResolvedOnce(LimitManager):
    """Flask-Limiter's limit resolution, worked out once per app and route instead of per request.

    What it resolves depends only on the registered limits and exemptions (any change forgets the
    answers) and on the app's configuration, which is read once at start-up.
    """

    def __init__(self, manager: LimitManager) -> None:
        super().__init__(
            application_limits=manager._application_limits,
            default_limits=manager._default_limits,
            decorated_limits=manager._decorated_limits,
            blueprint_limits=manager._blueprint_limits,
            route_exemptions=manager._route_exemptions,
            blueprint_exemptions=manager._blueprint_exemptions,
        )
        self._answers: weakref.WeakKeyDictionary[Flask, dict[tuple, Any]] = weakref.WeakKeyDictionary()

    def remembered(self, app: Flask, question: tuple, work: Callable[[], Any]) -> Any:
        """The answer to `question` for `app`, worked out by `work` the first time it is asked."""
        if isinstance(app, LocalProxy):  # Flask-Limiter passes current_app
            app = app._get_current_object()
        answers = self._answers.get(app)
        if answers is None:
            answers = self._answers.setdefault(app, {})
        if question not in answers:
            answers[question] = work()
        return answers[question]

    def _forget(self) -> None:
        self._answers = weakref.WeakKeyDictionary()

    def resolve_limits(self, app: Flask, *args: Any) -> tuple[list, ...]:
        resolved = self.remembered(
            app, ("limits", *args), lambda: super(ResolvedOnce, self).resolve_limits(app, *args)
        )
        return tuple(list(limits) for limits in resolved)  # callers get lists of their own

    def exemption_scope(self, app: Flask, endpoint: str | None, blueprint: str | None) -> ExemptionScope:
        return self.remembered(
            app,
            ("exempt", endpoint, blueprint),
            lambda: super(ResolvedOnce, self).exemption_scope(app, endpoint, blueprint),
        )

    def set_application_limits(self, limits: list) -> None:
        self._forget()
        super().set_application_limits(limits)

    def set_default_limits(self, limits: list) -> None:
        self._forget()
        super().set_default_limits(limits)

    def add_decorated_limit(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().add_decorated_limit(*args, **kwargs)

    def add_blueprint_limit(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().add_blueprint_limit(*args, **kwargs)

    def add_route_exemption(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().add_route_exemption(*args, **kwargs)

    def add_blueprint_exemption(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().add_blueprint_exemption(*args, **kwargs)

    def add_endpoint_hint(self, endpoint: str, callable: str) -> None:  # noqa: A002 (the base's name)
        if callable not in self._endpoint_hints.get(endpoint, ()):  # called on every decorated call
            self._forget()
        super().add_endpoint_hint(endpoint, callable)


def _plain(limit: RuntimeLimit) -> bool:
    """A limit that is hit once per request whatever the request: nothing to decide per request."""
    return not (
        limit.exempt_when
        or limit.deduct_when
        or limit.methods
        or limit.per_method
        or limit.meta_limits
        or callable(limit.cost)
    )


class PlannedChecks:
    """Mixin for Flask-Limiter's `Limiter`: the before-request check with its limits planned once."""

    limit_manager: ResolvedOnce

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_manager = ResolvedOnce(self.limit_manager)

    @property
    def context(self) -> LimiterContext:
        """Flask-Limiter's per-request state, without the typing cast it builds on each of ~8 reads."""
        ctx = request_context()
        contexts = getattr(ctx, "_limiter_request_context", None)
        if contexts is None:
            contexts = ctx._limiter_request_context = defaultdict(LimiterContext)
        return contexts[self]

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if (
            callable_name is not None
            or not in_middleware
            or self._storage_dead
            or self._meta_limits
            or not self._fail_on_first_breach
        ):
            return super()._check_request_limit(callable_name, in_middleware)  # type: ignore[misc]
        endpoint = self.identify_request()
        if not endpoint or endpoint.rpartition(".")[2] == "static" or not self.enabled:
            return None
        if any(exempt() for exempt in self._request_filters):
            return None
        app = current_app._get_current_object()
        blueprint = request.blueprint
        plan = self.limit_manager.remembered(
            app, ("plan", endpoint, blueprint), lambda: self._plan(app, endpoint, blueprint)
        )
        if plan is None:
            return super()._check_request_limit(callable_name, in_middleware)  # type: ignore[misc]
        try:
            self._hit_all(endpoint, plan)
        except (RateLimitExceeded, PoolExhausted):  # a dry pool is this request's 503, not swallowed
            raise
        except Exception:
            if not self._swallow_errors:
                raise
            self.logger.exception("Failed to rate limit. Swallowing error")
        return None

    def _plan(self, app: Flask, endpoint: str, blueprint: str | None) -> tuple[RuntimeLimit, ...] | None:
        """The limits to hit in order, as Flask-Limiter would pick them; None: not plain, ask it."""
        view = app.view_functions.get(endpoint)
        name = get_qualified_name(view) if view else ""
        if name in self._marked_for_limiting or self.limit_manager.has_hints(endpoint):
            return None  # a decorated view: its decorator checks limits as well
        defaults, decorated = self.limit_manager.resolve_limits(app, endpoint, blueprint, name, True, False)
        limits = list(dict.fromkeys(defaults)) + list(decorated)
        if not all(_plain(limit) for limit in limits):
            return None
        return tuple(sorted(limits, key=lambda limit: limit.limit))

    def _hit_all(self, endpoint: str, plan: tuple[RuntimeLimit, ...]) -> None:
        method = request.method
        view_limits: list[RequestLimit] = []
        failed: RuntimeLimit | None = None
        for lim in plan:
            scope, key = lim.scope_for(endpoint, method), lim.key_func()
            if not (key and scope):
                self.logger.error(f"Skipping limit: {lim.limit}. Empty value found in parameters.")
                continue
            args = [self._key_prefix, key, scope] if self._key_prefix else [key, scope]
            view_limits.append(RequestLimit(self, lim.limit, args, False, lim.shared))
            if not self.limiter.hit(lim.limit, *args, cost=lim.cost):
                self.logger.info("ratelimit %s (%s) exceeded at endpoint: %s", lim.limit, key, scope)
                view_limits[-1].breached = True
                failed = lim
                break  # fail on the first breach, as Flask-Limiter does by default
        context = self.context
        context.view_rate_limits = view_limits
        if failed is not None:
            context.view_rate_limit = view_limits[-1]
            self._raise_breach(failed, view_limits[-1].request_args)
        if view_limits:  # the hint for the headers: a limit of this route's own before a shared one
            explicit = [limit for limit in view_limits if not limit.shared]
            context.view_rate_limit = explicit[0] if explicit else view_limits[0]

    def _raise_breach(self, lim: RuntimeLimit, args: list[str]) -> None:
        """Flask-Limiter's breach handling: its callbacks, then RateLimitExceeded."""
        breach = RequestLimit(self, lim.limit, args, True, lim.shared)
        response = None
        for callback in dict.fromkeys([self._on_breach, lim.on_breach]):
            if callback:
                try:
                    returned = callback(breach)
                except Exception as err:
                    if not self._swallow_errors:
                        raise
                    self.logger.exception("on_breach callback failed with error %s", err)
                else:
                    if isinstance(returned, flask.wrappers.Response):
                        response = returned
        raise RateLimitExceeded(lim, response=response)


def limiter_base() -> type[Limiter]:
    """The Limiter class to build on: with the planned checks on the tested version, else as it comes."""
    if not PRIVATE:
        return Limiter
    return type("PlannedLimiter", (PlannedChecks, Limiter), {"__doc__": PlannedChecks.__doc__})
