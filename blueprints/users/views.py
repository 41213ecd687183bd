"""User endpoints: parse, call the store, return a dict and a status."""

from __future__ import annotations

import re
from typing import Any

from flask import url_for

from appfactory.cache import cache_call, invalidate_cache
from appfactory.identity.access import announce_revocation, authorize, may_see_private, requires_key
from appfactory.ratelimit import policy_limit
from appfactory.web.validation import invalid, json_body, text_field
from blueprints.users import bp, store

_FIELDS = ("email", "name")
# Deliberately loose: one @, no spaces, a dot in the domain. Delivery is the real test.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _user_fields(partial: bool) -> dict[str, Any]:
    body = json_body(allowed=_FIELDS)
    fields = {
        "email": text_field(body, "email", max_length=254, required=not partial),
        "name": text_field(body, "name", max_length=100, required=not partial),
    }
    if fields["email"] is not None:
        if not _EMAIL.fullmatch(fields["email"]):
            raise invalid("email", "must be an email address")
        fields["email"] = fields["email"].lower()
    return {key: value for key, value in fields.items() if key in body}


# Responses that show a user's email or key: no shared cache or browser history may keep them.
PRIVATE = {"Cache-Control": "no-store"}


def _as_seen(user: dict[str, Any]) -> dict[str, Any]:
    """The record as the caller may see it: the email for that user or an admin only."""
    if may_see_private(user["id"]):
        return user
    return {key: value for key, value in user.items() if key != "email"}


@bp.post("")
@policy_limit("RATE_LIMIT_SIGNUPS_PER_MINUTE", "signup")  # each new user is a new key: a tight budget
def create() -> tuple[dict, int, dict]:
    user, api_key = store.create(_user_fields(partial=False))
    location = {"Location": url_for(".show", user_id=user["id"]), **PRIVATE}
    return {**user, "api_key": api_key}, 201, location


@cache_call(
    ttl="USER_CACHE_TTL", key_prefix="user", key=lambda user_id: f"{user_id}:profile", shared_only=True
)
def _profile(user_id: int) -> dict[str, Any]:
    # The whole record is cached, never one viewer's rendering: what a caller sees is decided per response.
    return store.get(user_id)


@bp.get("/<id:user_id>")
def show(user_id: int) -> tuple[dict, int, dict]:
    user = _as_seen(_profile(user_id))
    return user, 200, PRIVATE if "email" in user else {}


@bp.patch("/<id:user_id>")
@requires_key()
def modify(user_id: int) -> tuple[dict, int, dict]:
    authorize(owner_id=user_id)
    fields = _user_fields(partial=True)
    if not fields:
        return store.get(user_id), 200, PRIVATE
    user = store.update(user_id, fields)
    invalidate_cache("user", pattern=f"{user_id}:*")
    return user, 200, PRIVATE


@bp.delete("/<id:user_id>")
@requires_key()
def remove(user_id: int) -> tuple[str, int]:
    authorize(owner_id=user_id)
    store.delete(user_id)  # the user's keys go with them
    announce_revocation()
    invalidate_cache("user", pattern=f"{user_id}:*")
    invalidate_cache("templates")  # the user's templates lost their owner_id
    return "", 204
