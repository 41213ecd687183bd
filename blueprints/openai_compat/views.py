"""/v1 endpoints: parse OpenAI's request, ask the service, answer in OpenAI's shapes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
from flask import current_app

from appfactory.cache import HIT, cache_status
from appfactory.contract import answers, contract
from appfactory.contract.document import streams_events
from appfactory.identity.access import requires_key
from appfactory.web.errors import ApiError
from blueprints.ai import streaming
from blueprints.ai.providers.base import Chat
from blueprints.ai.schemas import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from blueprints.openai_compat import bp, service
from blueprints.openai_compat.schemas import ChatCompletion, ChatRequest, Model, ModelList

_TAGS = ["openai"]
OWNER = "aigen"


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


@bp.get("/models")
@contract.validate(resp=answers(200, ModelList), tags=_TAGS)
@requires_key(unless="AI_ALLOW_ANONYMOUS")
def list_models() -> dict:
    """The models clients may ask for (AI_MODELS)."""
    return {"object": "list", "data": [_model(name) for name in sorted(current_app.extensions["ai_models"])]}


@bp.get("/models/<path:model_id>")
@contract.validate(resp=answers(200, Model, 404), tags=_TAGS)
@requires_key(unless="AI_ALLOW_ANONYMOUS")
def show_model(model_id: str) -> dict:
    """One offered model; 404 for any other."""
    if model_id not in current_app.extensions["ai_models"]:
        raise ApiError(404, f"The model {model_id!r} is not offered here.", "model_not_found")
    return _model(model_id)


@bp.post("/chat/completions")
@contract.validate(resp=answers(200, ChatCompletion, 404, 502, 503, 504), tags=_TAGS)
@requires_key(unless="AI_ALLOW_ANONYMOUS")
@streams_events("`data: <chat.completion.chunk JSON>` events, the last `data: [DONE]`.")
def chat_completions(json: ChatRequest) -> Any:
    """OpenAI's chat completions; with `stream: true`, server-sent `chat.completion.chunk` events
    ending in `data: [DONE]`. A cached answer streams as the pieces the model first sent."""
    chat = _chat(json)
    include_usage = bool(json.stream_options and json.stream_options.include_usage)
    if not json.stream:
        entry = service.complete(chat)
        return _completion(entry, cached=cache_status() == HIT)
    stream = None
    entry = service.cached(chat)
    if entry is None:
        stream = service.stream(chat)
    events = _replayed(entry, include_usage) if stream is None else _live(chat, stream, include_usage)
    return streaming.event_stream(_sse(events), stream)


def _chat(request: ChatRequest) -> Chat:
    offered = current_app.extensions["ai_models"]
    if request.model not in offered:
        raise ApiError(
            404,
            f"The model {request.model!r} does not exist or is not offered here; see GET /v1/models.",
            "model_not_found",
            field="model",
        )
    messages = tuple((message.role, message.text()) for message in request.messages)
    limit = current_app.config["MAX_PROMPT_CHARS"]
    if sum(len(text) for _, text in messages) > limit:
        raise ApiError(422, f"messages: at most {limit} characters in all", field="messages")
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    return Chat(
        messages=messages,
        model=request.model,
        max_tokens=request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
        top_p=request.top_p,
        stop=stop,
        seed=request.seed,
    )


def _completion(entry: dict[str, Any], cached: bool) -> dict[str, Any]:
    return {
        "id": service.completion_id(),
        "object": "chat.completion",
        "created": entry["created"],
        "model": entry["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(entry["pieces"])},
                "finish_reason": entry["finish_reason"],
            }
        ],
        "usage": service.usage_of(entry, cached),
    }


class _Chunks:
    """The chat.completion.chunk events of one answer: one id, one created time."""

    def __init__(self, model: str, created: int) -> None:
        self.base = {"id": service.completion_id(), "object": "chat.completion.chunk", "created": created}
        self.model = model

    def piece(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**self.base, "model": self.model, "choices": [choice]}

    def usage(self, usage: dict[str, int]) -> dict[str, Any]:
        return {**self.base, "model": self.model, "choices": [], "usage": usage}


def _replayed(entry: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    chunks = _Chunks(entry["model"], entry["created"])
    yield chunks.piece({"role": "assistant", "content": ""})
    for piece in entry["pieces"]:
        yield chunks.piece({"content": piece})
    yield chunks.piece({}, entry["finish_reason"])
    if include_usage:
        yield chunks.usage(service.usage_of(entry, cached=True))


def _live(
    chat: Chat, stream: streaming.Live | streaming.Follower, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """The pieces as the model sends them: led by this request, or followed (costing it nothing)."""
    chunks = _Chunks(chat.model, int(time.time()))
    yield chunks.piece({"role": "assistant", "content": ""})
    try:
        for piece in stream:
            yield chunks.piece({"content": piece})
    except ApiError as exc:  # the model failed mid-stream: say so, store nothing
        stream.fail(exc)
        yield {"error": {"message": exc.message, "type": "server_error", "param": None, "code": exc.code}}
        return
    entry = stream.finish()
    yield chunks.piece({}, entry["finish_reason"])
    if include_usage:
        yield chunks.usage(service.usage_of(entry, cached=isinstance(stream, streaming.Follower)))


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        yield b"data: " + orjson.dumps(event) + b"\n\n"
        if "error" in event:
            return
    yield b"data: [DONE]\n\n"
