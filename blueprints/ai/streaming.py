"""Streamed answers, for the native endpoint and /v1 alike: lead the one model stream of a cache entry,
store it once it ended, and send server-sent events that end the model call when the client leaves.

Identical concurrent streamed requests make one model call: the first claims the entry's single-flight
lock and streams live; the others wait for its entry and replay it (docs/openai.md#streams-and-the-cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, current_app, stream_with_context

from appfactory.cache.flow import ResponseCache
from blueprints.ai.guard import Admitted


class Live:
    """A stream this request leads: its pieces as the model sends them, and `settle`, which stores the
    entry once they ended (or nothing: `settle(None)`) and gives the single-flight lock back."""

    def __init__(self, pieces: Admitted, settle: Callable[[list[str] | None], dict | None]) -> None:
        self.pieces, self.settle = pieces, settle

    def close(self) -> None:
        """The client left, or the response is over: end the model call; store nothing if cut short."""
        self.pieces.close()
        self.settle(None)


def lead(
    prefix: str,
    key: str,
    open_pieces: Callable[[], Admitted],
    entry_of: Callable[[list[str], Admitted], dict[str, Any]],
) -> Live | None:
    """The live stream of `key`'s model call, admitted (a refusal raises here); None when an identical
    request leads it already: the caller waits for that entry instead."""
    state: ResponseCache = current_app.extensions["response_cache"]
    leads, token = state.claim(key)
    if not leads:
        return None
    try:
        pieces = open_pieces()
    except BaseException:
        state.release(key, token)
        raise
    ttl = current_app.config["AI_CACHE_TTL"]
    settled = False

    def settle(sent: list[str] | None) -> dict[str, Any] | None:
        nonlocal settled
        if settled:
            return None
        settled = True
        try:
            if sent is None:
                return None
            entry = entry_of(sent, pieces)
            state.put(prefix, key, ttl, entry)
            return entry
        finally:
            state.release(key, token)

    return Live(pieces, settle)


def event_stream(events: Iterator[bytes], live: Live | None) -> Response:
    """A text/event-stream response of `events`; a live stream ends when the response closes."""
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy must pass each event on at once
    if live is not None:  # a client that leaves ends the model call, and nothing is stored
        response.call_on_close(live.close)
    return response
