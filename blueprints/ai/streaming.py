"""Streamed answers, for the native endpoint and /v1 alike: one model stream per cache entry, its pieces
fanned out live to every identical request, the entry stored once it ended.

The first request for an entry leads (`Live`): it holds the entry's single-flight lock, sends the
model's pieces to its client and publishes them (relay.py); identical requests in any worker or
instance follow (`Follower`): they get what was already sent, then each piece as it comes. When the
leader's client leaves, the model call goes on for the followers (else it ends). When the leader dies,
one follower takes over (docs/openai.md#streams-and-the-cache).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, current_app, stream_with_context

from appfactory.cache.control import request_control
from appfactory.cache.flow import ResponseCache
from appfactory.cache.outcomes import HIT, MISS, note_detail, note_status
from appfactory.observability import tracing
from appfactory.web.errors import ApiError
from blueprints.ai import relay, usage
from blueprints.ai.guard import Admitted
from blueprints.ai.providers.base import Chat

CUT = "stream_cut"  # a leader's client left with nobody following: a late follower takes over
Opener = Callable[[], Admitted]
EntryOf = Callable[[list[str], Admitted], dict[str, Any]]


class Live:
    """A stream this request leads. Iterate its pieces, then `finish()` (stores the entry unless
    `stores` is false, tells the followers) or, when the model failed, `fail(error)`; `close()` when
    the response closes. `token`: its claim on the entry (None: nobody follows it)."""

    def __init__(
        self,
        state: ResponseCache,
        prefix: str,
        key: str,
        token: Any,
        pieces: Admitted,
        entry_of: EntryOf,
        stores: bool = True,
    ):
        self.state, self.prefix, self.key, self.token, self.stores = state, prefix, key, token, stores
        self.pieces, self.entry_of = pieces, entry_of
        self.relay = relay.relay_for(state.store, key, token)
        self.sent: list[str] = []
        self.over = False
        self.app = current_app._get_current_object()
        self.ttl = current_app.config["AI_CACHE_TTL"]

    def __iter__(self) -> Iterator[str]:
        for piece in self.pieces:
            self.sent.append(piece)
            self.relay.publish(piece)
            yield piece

    def finish(self) -> dict[str, Any]:
        """The stream ended: store its entry, then tell the followers (they read it)."""
        self.over = True
        try:
            entry = self.entry_of(self.sent, self.pieces)
            if self.stores:
                self.state.put(self.prefix, self.key, self.ttl, entry)
            self.relay.finish()
            return entry
        finally:
            self.state.release(self.key, self.token)

    def fail(self, error: ApiError) -> None:
        """The model failed mid-stream: nothing is stored; the followers get the error too."""
        self.over = True
        try:
            self.relay.fail(error.code, error.message)
        finally:
            self.state.release(self.key, self.token)

    def close(self) -> None:
        """The response closed. Cut short with followers listening: the model call goes on for them in
        the background; with none, it ends, and nothing is stored."""
        if self.over:
            return
        if self.relay.listeners() > 0:
            threading.Thread(
                target=self._finish_for_followers, name="stream-for-followers", daemon=True
            ).start()
            return
        self.over = True
        self.pieces.close()
        try:
            self.relay.fail(CUT, "The stream's first client left; it was not finished.")
        finally:
            self.state.release(self.key, self.token)

    def _finish_for_followers(self) -> None:
        with self.app.app_context():
            try:
                for _ in self:
                    pass
            except ApiError as exc:
                self.fail(exc)
                return
            except BaseException:
                self.pieces.close()
                self.fail(ApiError(502, "The model stream broke off.", "upstream_error"))
                return
            self.finish()


class Follower:
    """The pieces of an identical request's stream as they come; `finish()` then gives its entry.
    When its leader goes away unfinished, this request takes over (the text it already sent is
    skipped from the new stream; if the model answers differently this time, a 502)."""

    def __init__(
        self, state: ResponseCache, prefix: str, key: str, opener: Opener, entry_of: EntryOf
    ) -> None:
        self.state, self.prefix, self.key = state, prefix, key
        self.opener, self.entry_of = opener, entry_of
        self.block_ms = max(10, current_app.config["REDIS_TIMEOUT_MS"] // 2)  # within the socket timeout
        self.sent: list[str] = []  # what this request's client was sent
        self.entry: dict[str, Any] | None = None
        self.live: Live | None = None

    def __iter__(self) -> Iterator[str]:
        for _ in range(3):  # a leader, a takeover's leader, one more: then give up
            ending: list[tuple[str, str | None]] = []
            yield from self._beyond_sent(self._followed(ending))
            kind, value = ending[0] if ending else (relay.GONE, None)
            if kind == relay.END and (entry := self.state.peek(self.prefix, self.key)) is not None:
                self.entry = entry
                return
            if kind == relay.ERROR and (error := _error(value)).code != CUT:
                raise error
            # Gone, cut before anyone listened, or ended unstored: from the cache, else take over.
            if (found := self.state.peek(self.prefix, self.key)) is not None:
                yield from self._beyond_sent(pieces_of(found))
                self.entry = found
                return
            self.live = lead(self.prefix, self.key, self.opener, self.entry_of, self.state)
            if self.live is not None:
                try:
                    yield from self._beyond_sent(self.live)
                except ApiError as exc:
                    self.live.fail(exc)
                    raise
                self.entry = self.live.finish()
                return
        raise ApiError(502, "The answer's stream was lost; retry.", "stream_lost")

    def _followed(self, ending: list[tuple[str, str | None]]) -> Iterator[str]:
        """The pieces of one pass over the leader's stream; its last event goes into `ending`."""
        for kind, value in relay.follow(self.state.store, self.key, self.block_ms):
            if kind != relay.PIECE:
                ending.append((kind, value))
                return
            yield value

    def _beyond_sent(self, pieces: Any) -> Iterator[str]:
        """The text of `pieces` past what this request already sent: a stream begun again (a takeover)
        repeats it, and must repeat it exactly."""
        sent = "".join(self.sent)
        seen = ""
        for piece in pieces:
            if len(seen) >= len(sent):  # past it: pass each piece on
                self.sent.append(piece)
                yield piece
                continue
            seen += piece
            if len(seen) <= len(sent):
                if not sent.startswith(seen):
                    raise _diverged()
                continue
            if not seen.startswith(sent):
                raise _diverged()
            self.sent.append(seen[len(sent) :])
            yield self.sent[-1]

    def finish(self) -> dict[str, Any]:
        return self.entry

    def fail(self, error: ApiError) -> None:
        pass  # the leader's failure: nothing of this request's to undo

    def close(self) -> None:
        if self.live is not None:
            self.live.close()


def pieces_of(entry: dict[str, Any]) -> list[str]:
    """The pieces an entry was first sent in; word by word for an answer the model gave whole."""
    if pieces := entry.get("pieces"):
        return pieces
    return [word if n == 0 else " " + word for n, word in enumerate(entry["text"].split(" "))]


def _diverged() -> ApiError:
    return ApiError(
        502,
        "The answer's stream was cut and, asked again, the model answered differently; retry.",
        "stream_interrupted",
    )


def _error(payload: str | None) -> ApiError:
    error = json.loads(payload or "{}")
    return ApiError(
        502, error.get("message", "The model stream failed."), error.get("code", "upstream_error")
    )


def lead(
    prefix: str, key: str, opener: Opener, entry_of: EntryOf, state: ResponseCache | None = None
) -> Live | None:
    """The live stream of `key`'s model call, admitted (a refusal raises here); None when an identical
    request leads it already."""
    state = state or current_app.extensions["response_cache"]
    leads, token = state.claim(key)
    if not leads:
        return None
    try:
        pieces = opener()
    except BaseException:
        state.release(key, token)
        raise
    return Live(state, prefix, key, token, pieces, entry_of)


def open_chat(chat: Chat) -> Admitted:
    """The model's stream of `chat`, admitted by the guard: its tokens metered, one `chat` span."""
    provider = current_app.extensions["ai_provider"]
    meter = usage.Meter(chat.model, usage.estimate_prompt(text for _, text in chat.messages), chat.max_tokens)
    span = tracing.model_stream(
        provider.name, chat.model, chat.max_tokens, chat.temperature, provider.upstream
    )
    with span:
        return current_app.extensions["ai_guard"].open_stream(lambda: provider.stream(chat), meter, span)


def cached(prefix: str, key: str) -> dict[str, Any] | None:
    """A stored answer to replay, as the request's Cache-Control allows (`only-if-cached` without one:
    504); None: the answer streams from the model."""
    state: ResponseCache = current_app.extensions["response_cache"]
    return state.peek(prefix, key, request_control())


def lead_or_follow(prefix: str, key: str, opener: Opener, entry_of: EntryOf) -> Live | Follower:
    """This request's stream of `key`: the one it leads, or the one it follows (noted as collapsed).
    `Cache-Control: no-store`: a model call of its own, neither shared nor stored."""
    state: ResponseCache = current_app.extensions["response_cache"]
    control = request_control()
    note_status(MISS)
    if control.no_store:
        return Live(state, prefix, key, None, opener(), entry_of, stores=False)
    live = lead(prefix, key, opener, entry_of, state)
    if live is not None:
        return live
    note_status(HIT)
    note_detail("fwd=uri-miss" if control.plain else "fwd=request", "collapsed")
    return Follower(state, prefix, key, opener, entry_of)


def event_stream(events: Iterator[bytes], stream: Live | Follower | None) -> Response:
    """A text/event-stream response of `events`; the stream hears when the response closes."""
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy must pass each event on at once
    if stream is not None:
        response.call_on_close(stream.close)
    return response
