"""Template endpoints: take the parsed request, call the store, return a dict and a status."""

from typing import Any

from flask import current_app, url_for

from appfactory.cache import cache_view, invalidate_cache
from appfactory.contract import NoQuery, answers, contract
from appfactory.identity.access import authorize, requires_key
from appfactory.identity.context import current_caller
from blueprints.templates import bp, store
from blueprints.templates.rendering import render
from blueprints.templates.schemas import (
    NewTemplate,
    Page,
    Rendered,
    Template,
    TemplateChanges,
    TemplatePage,
    Variables,
)

_TAGS = ["templates"]


@bp.get("")
@contract.validate(resp=answers(200, TemplatePage, 504), tags=_TAGS)
@cache_view(ttl="TEMPLATES_CACHE_TTL", key_prefix="templates", shared_only=True)
def list_templates(query: Page) -> dict:
    """One page of templates, oldest first, with the total count."""
    return store.list_page(query.limit, query.offset)


@bp.get("/<id:template_id>")
@contract.validate(resp=answers(200, Template, 404), tags=_TAGS)
def show(template_id: int, query: NoQuery) -> dict:
    """One template."""
    return store.get(template_id)


@bp.post("")
@contract.validate(resp=answers(201, Template, 409), tags=_TAGS)
@requires_key()
def create(query: NoQuery, json: NewTemplate) -> tuple[dict, int, dict]:
    """Store a new template, owned by the caller's user; `Location` names it."""
    template = store.create({**json.model_dump(), "owner_id": current_caller().user_id})
    invalidate_cache("templates")
    return template, 201, {"Location": url_for(".show", template_id=template["id"])}


def _authorize_owner(template_id: int) -> dict[str, Any]:
    """The template, when the caller owns it or is an admin (403 otherwise, 404 when missing)."""
    template = store.get(template_id)
    authorize(owner_id=template["owner_id"])
    return template


@bp.put("/<id:template_id>")
@contract.validate(resp=answers(200, Template, 403, 404, 409), tags=_TAGS)
@requires_key()
def replace(template_id: int, query: NoQuery, json: NewTemplate) -> dict:
    """Replace a template the caller owns (admins: any)."""
    _authorize_owner(template_id)
    template = store.update(template_id, json.model_dump())
    invalidate_cache("templates")
    return template


@bp.patch("/<id:template_id>")
@contract.validate(resp=answers(200, Template, 403, 404, 409), tags=_TAGS)
@requires_key()
def modify(template_id: int, query: NoQuery, json: TemplateChanges) -> dict:
    """Change some fields of a template the caller owns (admins: any)."""
    current = _authorize_owner(template_id)
    fields = json.model_dump(exclude_unset=True)
    if not fields:
        return current
    template = store.update(template_id, fields)
    invalidate_cache("templates")
    return template


@bp.delete("/<id:template_id>")
@contract.validate(resp=answers(204, None, 403, 404), tags=_TAGS)
@requires_key()
def remove(template_id: int, query: NoQuery) -> tuple[str, int]:
    """Delete a template the caller owns (admins: any)."""
    _authorize_owner(template_id)
    store.delete(template_id)
    invalidate_cache("templates")
    return "", 204


@bp.post("/<id:template_id>/render")
@contract.validate(resp=answers(200, Rendered, 404), tags=_TAGS)
def render_template(template_id: int, query: NoQuery, json: Variables) -> dict:
    """The template's text with its placeholders filled; 422 naming any missing variable, or when the
    text would pass RENDER_MAX_CHARS."""
    template = store.get(template_id)
    text = render(template["body"], json.variables, current_app.config["RENDER_MAX_CHARS"])
    return {"template_id": template_id, "text": text}
