"""User endpoints: parse, call the store, return a dict and a status."""

from __future__ import annotations

import re
from typing import Any

from flask import url_for

from appfactory.cache import cache_call, invalidate_cache
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


@bp.post("")
def create() -> tuple[dict, int, dict]:
    user = store.create(_user_fields(partial=False))
    return user, 201, {"Location": url_for(".show", user_id=user["id"])}


@cache_call(
    ttl="USER_CACHE_TTL", key_prefix="user", key=lambda user_id: f"{user_id}:profile", shared_only=True
)
def _profile(user_id: int) -> dict[str, Any]:
    # The whole row is cached; what a viewer may see (the email) is decided per response.
    return store.get(user_id)


@bp.get("/<id:user_id>")
def show(user_id: int) -> dict:
    return dict(_profile(user_id))


@bp.patch("/<id:user_id>")
def modify(user_id: int) -> dict:
    fields = _user_fields(partial=True)
    if not fields:
        return store.get(user_id)
    user = store.update(user_id, fields)
    invalidate_cache("user", pattern=f"{user_id}:*")
    return user


@bp.delete("/<id:user_id>")
def remove(user_id: int) -> tuple[str, int]:
    store.delete(user_id)
    invalidate_cache("user", pattern=f"{user_id}:*")
    invalidate_cache("templates")  # the user's templates lost their owner_id
    return "", 204
