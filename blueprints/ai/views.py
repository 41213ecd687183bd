"""AI endpoints: parse and validate, call the service, return its dict."""

from flask import current_app

from appfactory.cache import answers_fresh_hits
from appfactory.contract import answers, contract, query_of
from appfactory.identity.access import requires_key
from appfactory.web.validation import invalid
from blueprints.ai import bp, service
from blueprints.ai.schemas import Answer, GenerateBody, GenerateQuery, Options


def _options(source: Options) -> dict:
    """The options, with the model checked against those offered here."""
    offered = current_app.extensions["ai_models"]
    if source.model is not None and source.model not in offered:
        raise invalid(
            "model", f"{source.model!r} is not offered here; choose one of {', '.join(sorted(offered))}"
        )
    return {"model": source.model, "max_tokens": source.max_tokens, "temperature": source.temperature}


def _prompt(prompt: str) -> str:
    limit = current_app.config["MAX_PROMPT_CHARS"]
    if len(prompt) > limit:
        raise invalid("prompt", f"must be at most {limit} characters")
    return prompt


def _query_entry() -> str:
    """The cache entry a GET reads, known before the view runs."""
    query = query_of(GenerateQuery)
    return service.entry_key(_prompt(query.prompt), **_options(query))


# A fresh cached answer is served before this view runs, on its behalf (appfactory/cache/early.py): the
# rate limiter's Redis round trip reads the entry, so a HIT costs that one round trip.
@bp.get("/generate")
@contract.validate(resp=answers(200, Answer, 502, 504), tags=["ai"])
@requires_key(unless="AI_ALLOW_ANONYMOUS")
@answers_fresh_hits(entry_key=_query_entry, answer=service.cached_answer)
def generate_from_query(query: GenerateQuery) -> dict:
    """Generate text from a prompt in the query string.

    Cached answers are served at once (`X-Cache: HIT`). The prompt travels in the request line, which
    holds at most 8,190 bytes once URL-encoded; send longer prompts with POST.
    """
    return service.generate(_prompt(query.prompt), **_options(query))


@bp.post("/generate")
@contract.validate(resp=answers(200, Answer, 404, 502, 504), tags=["ai"])
@requires_key(unless="AI_ALLOW_ANONYMOUS")
def generate(json: GenerateBody) -> dict:
    """Generate text from a prompt, or from a stored template filled with `variables`."""
    options = _options(json)
    if json.template_id is None:
        if json.variables is not None:
            raise invalid("variables", "is only accepted with template_id")
        if json.prompt is None:
            raise invalid("prompt", "is required")
        return service.generate(_prompt(json.prompt), **options)
    if json.prompt is not None:
        raise invalid("prompt", "send either prompt or template_id, not both")
    return service.generate(service.prompt_from_template(json.template_id, json.variables or {}), **options)
