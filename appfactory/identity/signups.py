"""Sign-up's budgets: every new user comes with a key, so they bound how fast keys are minted.

Per address, never per presented key (each sign-up hands out a new one): RATE_LIMIT_SIGNUPS_PER_MINUTE
and RATE_LIMIT_SIGNUPS_PER_HOUR. For the whole service, under one constant key: SIGNUPS_PER_DAY.
Flask-Limiter shared limits, counted where every other limit is (Redis: exact across workers and
instances); admin keys spend none. Changing an email spends the address's two budgets as well: both
answers tell whether an address is registered (docs/identity.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, request
from limits import parse

from appfactory.identity.context import current_caller
from appfactory.ratelimit.headers import breach_message
from appfactory.ratelimit.limiter import limited_total, limiter, retry_in
from appfactory.web.addresses import budget_key
from appfactory.web.errors import ApiError

# (budget name, config key, period): the address's budgets, then the service's.
PER_ADDRESS = (
    ("signup", "RATE_LIMIT_SIGNUPS_PER_MINUTE", "minute"),
    ("signup-hour", "RATE_LIMIT_SIGNUPS_PER_HOUR", "hour"),
)
TOTAL = ("signup-total", "SIGNUPS_PER_DAY", "day")


def _address() -> str:
    return budget_key(request.remote_addr)


def _everyone() -> str:
    return "service"  # one key: every address spends the same total


def _by_admin() -> bool:
    caller = current_caller()
    return caller is not None and caller.admin


def _amount(config_key: str, period: str) -> Callable[[], str]:
    return lambda: f"{current_app.config[config_key]}/{period}"


def _message() -> str:
    return breach_message(limiter.current_limit)


def _budget(name: str, config_key: str, period: str, key_func: Callable[[], str]) -> Any:
    return limiter.shared_limit(
        _amount(config_key, period),
        scope=name,
        key_func=key_func,
        exempt_when=_by_admin,
        error_message=_message,
    )


def signup_limits(view: Callable[..., Any]) -> Callable[..., Any]:
    """Sign-up's budgets on its view: the address's minute and hour, the service's day."""
    for name, config_key, period in PER_ADDRESS:
        view = _budget(name, config_key, period, _address)(view)
    return _budget(*TOTAL, _everyone)(view)


def spend_signup_budget() -> None:
    """Spend the address's sign-up budgets on an answer that tells whether an email is registered;
    429 once one is spent (admin keys spend nothing)."""
    if not limiter.enabled or _by_admin():
        return
    address = _address()
    for name, config_key, period in PER_ADDRESS:
        item = parse(_amount(config_key, period)())
        if not limiter.limiter.hit(item, address, name):  # the keys Flask-Limiter counts sign-ups under
            limited_total.labels(name).inc()
            seconds = retry_in(item, address, name)
            raise ApiError(
                429,
                f"Rate limit of {item.amount} requests per {item.get_expiry()} s exceeded; "
                f"retry in {seconds} s.",
                retry_after=seconds,
            )
