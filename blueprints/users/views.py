"""User endpoints: take the parsed request, call the store, return a dict and a status."""

from typing import Any

from flask import url_for

from appfactory.cache import cache_call, invalidate_cache
from appfactory.contract import NoQuery, answers, contract
from appfactory.identity.access import (
    announce_revocation,
    authorize,
    may_see_private,
    requires_key,
    signup_gate,
)
from appfactory.identity.signups import signup_limits, spend_signup_budget
from blueprints.users import bp, store
from blueprints.users.schemas import NewUser, NewUserWithKey, User, UserChanges

_TAGS = ["users"]

# Responses that show a user's email or key: no shared cache or browser history may keep them.
PRIVATE = {"Cache-Control": "no-store"}


def _as_seen(user: dict[str, Any]) -> dict[str, Any]:
    """The record as the caller may see it: the email for that user or an admin only."""
    if may_see_private(user["id"]):
        return user
    return {key: value for key, value in user.items() if key != "email"}


@bp.post("")
@signup_gate  # closed: 403 before the body is read
@contract.validate(resp=answers(201, NewUserWithKey, 403, 409), tags=_TAGS)
@signup_limits  # each new user is a new key; the 409 for a taken email is behind them too
def create(query: NoQuery, json: NewUser) -> tuple[dict, int, dict]:
    """Sign up: a new user and its first API key, shown this once."""
    user, api_key = store.create(json.model_dump())
    location = {"Location": url_for(".show", user_id=user["id"]), **PRIVATE}
    return {**user, "api_key": api_key}, 201, location


@cache_call(
    ttl="USER_CACHE_TTL", key_prefix="user", key=lambda user_id: f"{user_id}:profile", shared_only=True
)
def _profile(user_id: int) -> dict[str, Any]:
    # The whole record is cached, never one viewer's rendering: what a caller sees is decided per response.
    return store.get(user_id)


@bp.get("/<id:user_id>")
@contract.validate(resp=answers(200, User, 404, 504), tags=_TAGS)
def show(user_id: int, query: NoQuery) -> tuple[dict, int, dict]:
    """A user; the email only for the user's own keys and admins."""
    user = _as_seen(_profile(user_id))
    return user, 200, PRIVATE if "email" in user else {}


@bp.patch("/<id:user_id>")
@contract.validate(resp=answers(200, User, 403, 404, 409), tags=_TAGS)
@requires_key()
def modify(user_id: int, query: NoQuery, json: UserChanges) -> tuple[dict, int, dict]:
    """Change the caller's own record (admins: any)."""
    authorize(owner_id=user_id)
    fields = json.model_dump(exclude_unset=True)
    if "email" in fields:  # a 409 here tells whether an address is registered, as sign-up's does
        spend_signup_budget()
    if not fields:
        return store.get(user_id), 200, PRIVATE
    user = store.update(user_id, fields)
    invalidate_cache("user", pattern=f"{user_id}:*")
    return user, 200, PRIVATE


@bp.delete("/<id:user_id>")
@contract.validate(resp=answers(204, None, 403, 404), tags=_TAGS)
@requires_key()
def remove(user_id: int, query: NoQuery) -> tuple[str, int]:
    """Delete the caller's own record and its keys (admins: any)."""
    authorize(owner_id=user_id)
    store.delete(user_id)  # the user's keys go with them
    announce_revocation()
    invalidate_cache("user", pattern=f"{user_id}:*")
    invalidate_cache("templates")  # the user's templates lost their owner_id
    return "", 204
