"""AI endpoints: parse and validate, call the service, return its dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, request

from appfactory.fastpath import answers_fresh_hits
from appfactory.identity.access import requires_key
from appfactory.web.validation import invalid, json_body, number_field, text_field
from blueprints.ai import bp, service

MAX_MODEL_CHARS = 100
MAX_TOKENS = 4096
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.7
_POST_FIELDS = ("prompt", "model", "max_tokens", "temperature", "template_id", "variables")


def _model(source: Mapping[str, Any]) -> str | None:
    model = text_field(source, "model", max_length=MAX_MODEL_CHARS, required=False)
    offered = current_app.extensions["ai_models"]
    if model is not None and model not in offered:
        raise invalid("model", f"{model!r} is not offered here; choose one of {', '.join(sorted(offered))}")
    return model


def _options(source: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model": _model(source),
        "max_tokens": number_field(
            source, "max_tokens", minimum=1, maximum=MAX_TOKENS, integer=True, default=DEFAULT_MAX_TOKENS
        ),
        "temperature": float(
            number_field(source, "temperature", minimum=0, maximum=2, default=DEFAULT_TEMPERATURE)
        ),
    }


def _prompt(source: Mapping[str, Any]) -> str:
    return text_field(source, "prompt", max_length=current_app.config["MAX_PROMPT_CHARS"])


def _query() -> tuple[str, dict[str, Any]]:
    """The GET's prompt and options."""
    args = request.args
    return _prompt(args), _options(args)


def _query_entry() -> str:
    """The cache entry a GET reads, known before the view runs."""
    prompt, options = _query()
    return service.entry_key(prompt, **options)


# A fresh cached answer is served before this view runs, on its behalf (appfactory/fastpath.py): the
# rate limiter's Redis round trip reads the entry, so a HIT costs that one round trip.
@bp.get("/generate")
@requires_key(unless="AI_ALLOW_ANONYMOUS")
@answers_fresh_hits(entry_key=_query_entry, answer=service.cached_answer)
def generate_from_query() -> dict:
    prompt, options = _query()
    return service.generate(prompt, **options)


@bp.post("/generate")
@requires_key(unless="AI_ALLOW_ANONYMOUS")
def generate() -> dict:
    body = json_body(allowed=_POST_FIELDS)
    options = _options(body)
    if body.get("template_id") is None:
        if "variables" in body:
            raise invalid("variables", "is only accepted with template_id")
        return service.generate(_prompt(body), **options)
    if "prompt" in body:
        raise invalid("prompt", "send either prompt or template_id, not both")
    template_id = number_field(body, "template_id", minimum=1, maximum=2**31 - 1, integer=True)
    if isinstance(body["template_id"], str):
        raise invalid("template_id", "must be a whole number")
    variables = body.get("variables", {})
    if not isinstance(variables, dict):
        raise invalid("variables", "must be an object")
    return service.generate(service.prompt_from_template(template_id, variables), **options)
