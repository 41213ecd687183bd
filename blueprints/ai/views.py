"""AI endpoints: parse and validate, call the service, return its dict (or its events)."""

from collections.abc import Iterator
from typing import Any

import orjson
from flask import Response, current_app, request

from appfactory.cache import answers_fresh_hits
from appfactory.contract import answers, contract, query_of
from appfactory.contract.document import streams_events
from appfactory.identity.access import requires_key
from appfactory.web.errors import ApiError
from appfactory.web.validation import invalid
from blueprints.ai import bp, service, streaming
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
@streams_events('`data: {"text"}` events as the model writes, then `event: done` with the answer.')
def generate(json: GenerateBody) -> dict | Response:
    """Generate text from a prompt, or from a stored template filled with `variables`.

    With `"stream": true` (or `Accept: text/event-stream`) the text comes as server-sent events, each
    piece as the model writes it (a cached answer: the pieces it was first sent in), then the whole
    answer in a `done` event (docs/api.md#streamed-answers).
    """
    options = _options(json)
    if json.template_id is None:
        if json.variables is not None:
            raise invalid("variables", "is only accepted with template_id")
        if json.prompt is None:
            raise invalid("prompt", "is required")
        prompt = _prompt(json.prompt)
    elif json.prompt is not None:
        raise invalid("prompt", "send either prompt or template_id, not both")
    else:
        prompt = service.prompt_from_template(json.template_id, json.variables or {})
    if json.stream or _accepts_only_events():
        return _streamed(prompt, options)
    return service.generate(prompt, **options)


def _accepts_only_events() -> bool:
    """The request asks for server-sent events rather than JSON."""
    accept = request.accept_mimetypes
    return accept.best == "text/event-stream" and accept.quality("application/json") < 1


def _streamed(prompt: str, options: dict) -> Response:
    found, stream = service.stream(prompt, **options)
    events = _replayed(found) if stream is None else _live(stream)
    return streaming.event_stream(events, stream)


def _event(data: dict[str, Any], name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _replayed(result: dict[str, Any]) -> Iterator[bytes]:
    """A stored answer, in the pieces it was first sent in (word by word when the model gave it whole)."""
    pieces = result.get("pieces") or [
        w if n == 0 else " " + w for n, w in enumerate(result["text"].split(" "))
    ]
    for piece in pieces:
        yield _event({"text": piece})
    yield _event(service.answer_of(result, cached=True), "done")


def _live(stream: streaming.Live | streaming.Follower) -> Iterator[bytes]:
    """The pieces as the model sends them: led by this request, or followed (costing it nothing)."""
    try:
        for piece in stream:
            yield _event({"text": piece})
    except ApiError as exc:  # the model failed mid-stream: say so, store nothing
        stream.fail(exc)
        yield _event({"error": {"code": exc.code, "message": exc.message}}, "error")
        return
    followed = isinstance(stream, streaming.Follower)
    yield _event(service.answer_of(stream.finish(), cached=followed), "done")
