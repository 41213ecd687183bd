"""Template endpoints: parse, call the store, return a dict and a status."""

from __future__ import annotations

from typing import Any

from flask import url_for

from appfactory.cache import cache_view, invalidate_cache
from appfactory.identity.access import authorize, requires_key
from appfactory.identity.context import current_caller
from appfactory.web.validation import invalid, json_body, pagination, text_field
from blueprints.templates import bp, store
from blueprints.templates.rendering import render

_FIELDS = ("name", "body", "description")
MAX_NAME, MAX_BODY, MAX_DESCRIPTION = 100, 20_000, 500


def _template_fields(partial: bool) -> dict[str, Any]:
    body = json_body(allowed=_FIELDS)
    fields = {
        "name": text_field(body, "name", max_length=MAX_NAME, required=not partial),
        "body": text_field(body, "body", max_length=MAX_BODY, required=not partial, strip=False),
        "description": text_field(
            body, "description", max_length=MAX_DESCRIPTION, required=False, min_length=0
        ),
    }
    if partial:
        return {key: value for key, value in fields.items() if key in body}
    fields["description"] = fields["description"] or ""
    return fields


@bp.get("")
@cache_view(ttl="TEMPLATES_CACHE_TTL", key_prefix="templates", shared_only=True)
def list_templates() -> dict:
    limit, offset = pagination()
    return store.list_page(limit, offset)


@bp.get("/<id:template_id>")
def show(template_id: int) -> dict:
    return store.get(template_id)


@bp.post("")
@requires_key()
def create() -> tuple[dict, int, dict]:
    fields = _template_fields(partial=False)
    template = store.create({**fields, "owner_id": current_caller().user_id})
    invalidate_cache("templates")
    return template, 201, {"Location": url_for(".show", template_id=template["id"])}


def _authorize_owner(template_id: int) -> dict[str, Any]:
    """The template, when the caller owns it or is an admin (403 otherwise, 404 when missing)."""
    template = store.get(template_id)
    authorize(owner_id=template["owner_id"])
    return template


@bp.put("/<id:template_id>")
@requires_key()
def replace(template_id: int) -> dict:
    _authorize_owner(template_id)
    template = store.update(template_id, _template_fields(partial=False))
    invalidate_cache("templates")
    return template


@bp.patch("/<id:template_id>")
@requires_key()
def modify(template_id: int) -> dict:
    current = _authorize_owner(template_id)
    fields = _template_fields(partial=True)
    if not fields:
        return current
    template = store.update(template_id, fields)
    invalidate_cache("templates")
    return template


@bp.delete("/<id:template_id>")
@requires_key()
def remove(template_id: int) -> tuple[str, int]:
    _authorize_owner(template_id)
    store.delete(template_id)
    invalidate_cache("templates")
    return "", 204


@bp.post("/<id:template_id>/render")
def render_template(template_id: int) -> dict:
    body = json_body(allowed=("variables",))
    variables = body.get("variables", {})
    if not isinstance(variables, dict):
        raise invalid("variables", "must be an object")
    template = store.get(template_id)
    return {"template_id": template_id, "text": render(template["body"], variables)}
