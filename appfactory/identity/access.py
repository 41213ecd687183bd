"""What views ask of identity: a key required, a record's owner or an admin."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app

from appfactory.identity.context import Caller, current_caller
from appfactory.identity.hooks import unauthorized
from appfactory.web.errors import ApiError

SIGNUP_DISABLED = "Sign-up is closed: an administrator creates accounts."


def requires_key(unless: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a view that needs a valid key; `unless` names a config flag that admits anonymous callers.

    Checked by the identity hook before the view and before any cached answer (appfactory/cache/early.py).
    """

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.requires_key = unless or True  # type: ignore[attr-defined]
        return view

    return mark


def signup_gate(view: Callable[..., Any]) -> Callable[..., Any]:
    """Sign-up's door: with SIGNUP_ENABLED false only admin keys create users, the others get 403
    before the body is read or a budget spent (the CLI creates users too: `flask users create`)."""

    @functools.wraps(view)
    def gated(*args: Any, **kwargs: Any) -> Any:
        if not current_app.config["SIGNUP_ENABLED"]:
            caller = current_caller()
            if caller is None or not caller.admin:
                raise ApiError(403, SIGNUP_DISABLED, "signup_disabled")
        return view(*args, **kwargs)

    return gated


def authorize(owner_id: int | None) -> Caller:
    """The caller, when it may write a record owned by `owner_id` (None: no one, admins only)."""
    caller = current_caller()
    if caller is None:
        raise unauthorized()
    if not caller.admin and caller.user_id != owner_id:
        raise ApiError(403, "This key may not change what another user owns.")
    return caller


def may_see_private(user_id: int) -> bool:
    """Whether the caller may see `user_id`'s private fields: that user, or an admin."""
    caller = current_caller()
    return caller is not None and (caller.admin or caller.user_id == user_id)


def announce_revocation() -> bool:
    """After a key is revoked or a user deleted (committed): every worker refuses the key on its next
    request. False when Redis could not be told (see docs/identity.md)."""
    return current_app.extensions["identity"].revoked()
