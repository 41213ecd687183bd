"""Generation: resolve the prompt and model, then ask the provider through the cache."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import current_app

from appfactory.cache import HIT, STALE, cache_call, cache_status
from appfactory.identity.context import current_caller
from appfactory.observability import tracing
from appfactory.observability.metrics import observe_upstream
from appfactory.web.errors import ApiError
from blueprints.ai import streaming, usage
from blueprints.ai.guard import Admitted
from blueprints.ai.providers.base import Chat, Usage
from blueprints.templates import store as template_store
from blueprints.templates.rendering import render


def audience() -> str:
    """Whose answers a cached answer is shared with: everyone, or (AI_CACHE_SCOPE=user) the caller."""
    if current_app.config["AI_CACHE_SCOPE"] == "shared":
        return "*"
    caller = current_caller()
    return f"user:{caller.user_id}" if caller is not None else "anonymous"


def entry_key(prompt: str, model: str | None, max_tokens: int, temperature: float) -> str:
    """The cache entry `generate` reads for these parameters."""
    provider = current_app.extensions["ai_provider"]
    model = model or provider.default_model
    return _complete.entry_key(
        audience(), provider.name, provider.upstream, model, prompt, max_tokens, temperature
    )


def generate(prompt: str, model: str | None, max_tokens: int, temperature: float) -> dict[str, Any]:
    """The answer for these parameters, from the cache when it has it."""
    provider = current_app.extensions["ai_provider"]
    model = model or provider.default_model
    result = _complete(audience(), provider.name, provider.upstream, model, prompt, max_tokens, temperature)
    return _answer(result, cache_status() in (HIT, STALE))


def stream(
    prompt: str, model: str | None, max_tokens: int, temperature: float
) -> tuple[dict[str, Any], None] | tuple[None, streaming.Live | streaming.Follower]:
    """(a stored result to replay, None), or (None, the model's live stream: the one this request
    leads, which stores the result once it ended, or the one an identical request leads)."""
    provider = current_app.extensions["ai_provider"]
    model = model or provider.default_model
    key = entry_key(prompt, model, max_tokens, temperature)
    if (found := streaming.cached("ai", key)) is not None:
        return found, None
    chat = Chat(messages=(("user", prompt),), model=model, max_tokens=max_tokens, temperature=temperature)

    def result(sent: list[str], pieces: Admitted) -> dict[str, Any]:
        return _result(prompt, model, provider.name, "".join(sent), pieces.meter) | {"pieces": sent}

    return None, streaming.lead_or_follow("ai", key, lambda: streaming.open_chat(chat), result)


def answer_of(result: dict[str, Any], cached: bool) -> dict[str, Any]:
    """What the answer says of a result (a streamed one's last event as well)."""
    return _answer(result, cached)


def cached_answer(result: dict[str, Any]) -> dict[str, Any]:
    """What `generate` returns for a result found fresh in the cache."""
    return _answer(result, True)


def _answer(result: dict[str, Any], cached: bool) -> dict[str, Any]:
    return {
        "prompt": result["prompt"],
        "model": result["model"],
        "provider": result["provider"],
        "text": result["text"],
        "cached": cached,
        "generated_at": result["generated_at"],
        "usage": _usage(result, cached),
    }


def _usage(result: dict[str, Any], cached: bool) -> dict[str, Any]:
    """The answer's usage; an entry from before usage was kept gets the estimate."""
    kept = result.get("usage")
    if kept is None:
        figures = Usage(usage.estimate(result["prompt"]), usage.estimate(result["text"]))
        return usage.as_fields(figures, estimated=True, upstream=not cached)
    return usage.fields_of(kept, cached)


@cache_call(ttl="AI_CACHE_TTL", key_prefix="ai")
def _complete(
    audience: str,
    provider_name: str,
    upstream: str,
    model: str,
    prompt: str,
    max_tokens: int,
    temperature: float,
) -> dict:
    # Every argument is part of the cache key: each one changes the answer (`upstream`: which server)
    # or who may read it (`audience`).
    provider = current_app.extensions["ai_provider"]
    guard = current_app.extensions["ai_guard"]
    meter = usage.Meter(model, usage.estimate(prompt), max_tokens)
    started = time.perf_counter()
    try:
        with tracing.model_call(provider_name, model, max_tokens, temperature, upstream):
            answer = guard.call(lambda: provider.complete(prompt, model, max_tokens, temperature), meter)
            if not meter.estimated:  # the model server's own figures, on the model call's span
                tracing.note_usage(*meter.usage)
    finally:  # failed and timed-out calls count too: they are what an operator looks for
        observe_upstream(provider_name, time.perf_counter() - started)
    return _result(prompt, model, provider_name, answer.text, meter)


def _result(prompt: str, model: str, provider_name: str, text: str, meter: usage.Meter) -> dict[str, Any]:
    """What the cache keeps of an answer (a streamed one's pieces beside it)."""
    return {
        "prompt": prompt,
        "model": model,
        "provider": provider_name,
        "text": text,
        "generated_at": datetime.now(UTC).isoformat(),
        "usage": meter.kept(),
    }


def prompt_from_template(template_id: int, variables: Mapping[str, Any]) -> str:
    """Render a stored template into a prompt; 404 when it does not exist, 422 when too long (counted
    before the text is built, blanks around it included) or empty."""
    template = template_store.get(template_id)
    limit = current_app.config["MAX_PROMPT_CHARS"]
    prompt = render(template["body"], variables, limit, field="prompt").strip()
    if not prompt:
        raise ApiError(422, f"prompt: the rendered template must be 1 to {limit} characters", field="prompt")
    return prompt
