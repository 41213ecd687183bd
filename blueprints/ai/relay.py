"""The pieces of a live model stream, passed from the request leading it to the identical requests
following it: through a Redis Stream across workers and instances, in memory within a process.

The leader publishes each piece as it sends it to its own client, then `end` (after the entry is
stored) or `error`. A follower reads from the first piece on (a late joiner gets what was already sent,
then follows) until one of those; when the leader is gone without either (its lock expired or was
released), the follower hears GONE and decides what to do (streaming.Follower).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from appfactory.cache.stores import RedisStore
from appfactory.redis.client import REDIS_ERRORS

PIECE, END, ERROR, GONE = "piece", "end", "error", "gone"
Event = tuple[str, str | None]

STREAM_TTL_S = 120  # a stream outlives its model call a little: followers joining late read it whole
LISTENERS_TTL_S = 300
_READ_COUNT = 256


class RedisRelay:
    """A leader's side of a Redis Stream, `{ns}:live:{entry key}:{lock token}`: one per model call."""

    def __init__(self, store: RedisStore, key: str, token: str) -> None:
        self.client = store.client
        self.breaker = store.breaker
        self.stream = live_stream(store, key, token)

    def publish(self, piece: str) -> None:
        self._add({"p": piece})

    def finish(self) -> None:
        self._add({"end": "1"})

    def fail(self, code: str, message: str) -> None:
        self._add({"error": json.dumps({"code": code, "message": message})})

    def listeners(self) -> int:
        try:
            return int(self.client.get(self.stream + ":listeners") or 0)
        except REDIS_ERRORS:
            return 0

    def _add(self, fields: dict[str, str]) -> None:
        if not self.breaker.healthy:
            return  # followers notice the leader's end by its lock, and read the entry
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.stream, fields, maxlen=10_000, approximate=True)
            pipe.expire(self.stream, STREAM_TTL_S)
            pipe.execute()
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)


def live_stream(store: RedisStore, key: str, token: str) -> str:
    return f"{store.live_prefix}{key}:{token}"


def follow_redis(store: RedisStore, key: str, block_ms: int) -> Iterator[Event]:
    """The events of the stream the current holder of `key`'s lock publishes; GONE when there is no
    holder, or it went away without an end."""
    client, lock = store.client, store.lock_prefix + key
    try:
        token = client.get(lock)
        if token is None:
            yield GONE, None
            return
        stream = live_stream(store, key, token.decode())
        listeners = stream + ":listeners"
        client.pipeline(transaction=False).incr(listeners).expire(listeners, LISTENERS_TTL_S).execute()
    except REDIS_ERRORS:
        yield GONE, None
        return
    try:
        last, leader_gone = "0-0", False
        while True:
            try:
                answer = client.xread(
                    {stream: last}, count=_READ_COUNT, block=None if leader_gone else block_ms
                )
                if not answer:
                    if leader_gone:  # read once more after the lock went: nothing came, it is gone
                        yield GONE, None
                        return
                    leader_gone = client.get(lock) != token
                    continue
            except REDIS_ERRORS:
                yield GONE, None
                return
            for entry_id, fields in answer[0][1]:
                last = entry_id
                event = _event(fields)
                yield event
                if event[0] != PIECE:
                    return
    finally:
        try:
            client.decr(listeners)
        except REDIS_ERRORS:
            pass


def _event(fields: dict[bytes, bytes]) -> Event:
    if b"p" in fields:
        return PIECE, fields[b"p"].decode()
    if b"end" in fields:
        return END, None
    return ERROR, fields.get(b"error", b"{}").decode()


class LocalRelay:
    """Within a process (no Redis): the pieces in a list the followers read under a condition."""

    _live: dict[str, LocalRelay] = {}  # entry key -> the relay of the stream leading it
    _registry_lock = threading.Lock()

    def __init__(self, key: str) -> None:
        self.key = key
        self.pieces: list[str] = []
        self.outcome: Event | None = None
        self.listening = 0
        self.changed = threading.Condition()
        with self._registry_lock:
            self._live[key] = self

    def publish(self, piece: str) -> None:
        with self.changed:
            self.pieces.append(piece)
            self.changed.notify_all()

    def finish(self) -> None:
        self._end((END, None))

    def fail(self, code: str, message: str) -> None:
        self._end((ERROR, json.dumps({"code": code, "message": message})))

    def listeners(self) -> int:
        return self.listening

    def _end(self, outcome: Event) -> None:
        with self.changed:
            self.outcome = outcome
            self.changed.notify_all()
        with self._registry_lock:
            if self._live.get(self.key) is self:
                del self._live[self.key]

    @classmethod
    def follow(cls, key: str) -> Iterator[Event]:
        relay = cls._live.get(key)
        if relay is None:
            yield GONE, None
            return
        sent = 0
        with relay.changed:
            relay.listening += 1
        try:
            while True:
                with relay.changed:
                    while sent == len(relay.pieces) and relay.outcome is None:
                        relay.changed.wait()
                    fresh, outcome = relay.pieces[sent:], relay.outcome
                for piece in fresh:
                    yield PIECE, piece
                sent += len(fresh)
                if outcome is not None and sent == len(relay.pieces):
                    yield outcome
                    return
        finally:
            with relay.changed:
                relay.listening -= 1


class NoRelay:
    """The store is away: nobody can follow (every request leads its own call)."""

    def publish(self, piece: str) -> None:
        pass

    def finish(self) -> None:
        pass

    def fail(self, code: str, message: str) -> None:
        pass

    def listeners(self) -> int:
        return 0


def relay_for(store: Any, key: str, token: Any) -> RedisRelay | LocalRelay | NoRelay:
    """The relay a leader holding `token` (its claim on `key`) publishes to."""
    if token is None:
        return NoRelay()
    if isinstance(store, RedisStore):
        return RedisRelay(store, key, token)
    return LocalRelay(key)


def follow(store: Any, key: str, block_ms: int) -> Iterator[Event]:
    if isinstance(store, RedisStore):
        return follow_redis(store, key, block_ms)
    return LocalRelay.follow(key)
