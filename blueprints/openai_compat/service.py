"""Chat completions through the cache: one entry per conversation and options, whatever way it was
asked. A completion is always streamed from the model and its pieces kept, so a streamed repeat
replays them in order and a non-streamed one joins them."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson
from flask import current_app

from appfactory.cache import cache_call
from blueprints.ai import streaming, usage
from blueprints.ai.guard import Admitted
from blueprints.ai.providers.base import Chat
from blueprints.ai.service import audience

PREFIX = "chat"


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _entry(chat: Chat, pieces: list[str], admitted: Admitted) -> dict[str, Any]:
    """What the cache keeps of a completed stream: its pieces and what the model charged."""
    return {
        "created": int(time.time()),
        "model": chat.model,
        "pieces": pieces,
        "finish_reason": "stop",
        "usage": admitted.meter.kept(),
    }


def usage_of(entry: dict[str, Any], cached: bool) -> dict[str, Any]:
    """The answer's `usage`: the model's charge when the entry was made; `upstream_tokens` 0 on a HIT."""
    return usage.fields_of(entry["usage"], cached)


def complete(chat: Chat) -> dict[str, Any]:
    """The whole completion: cached, and computed once for concurrent identical requests."""
    provider = current_app.extensions["ai_provider"]
    return _collected(audience(), provider.name, provider.upstream, chat)


def cached(chat: Chat) -> dict[str, Any] | None:
    """A fresh entry for this chat that the request's Cache-Control takes (a HIT), or None."""
    return streaming.cached(PREFIX, _entry_key(chat))


def stream(chat: Chat) -> streaming.Live | streaming.Follower:
    """The model's live stream of this chat: the one this request leads (admitted: a refusal raises
    here), or the one an identical request leads, followed as it comes."""
    return streaming.lead_or_follow(
        PREFIX,
        _entry_key(chat),
        lambda: streaming.open_chat(chat),
        lambda sent, pieces: _entry(chat, sent, pieces),
    )


def _entry_key(chat: Chat) -> str:
    provider = current_app.extensions["ai_provider"]
    return _collected.entry_key(audience(), provider.name, provider.upstream, chat)


@cache_call(ttl="AI_CACHE_TTL", key_prefix=PREFIX, key=lambda *parts: _digest(parts))
def _collected(audience_: str, provider_name: str, upstream: str, chat: Chat) -> dict[str, Any]:
    pieces = streaming.open_chat(chat)
    try:
        return _entry(chat, list(pieces), pieces)
    finally:
        pieces.close()


def _digest(parts: tuple) -> str:
    audience_, provider_name, upstream, chat = parts
    payload = orjson.dumps([audience_, provider_name, upstream, chat.payload()], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()
