"""Where cache entries and single-flight locks live: Redis, or this process."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from cachelib import SimpleCache
from flask import has_request_context

from appfactory.cache import early
from appfactory.compat import cachelib
from appfactory.redis.client import REDIS_ERRORS
from appfactory.resilience.breaker import Breaker
from appfactory.web.errors import ApiError

# An entry is (soft expiry as Unix time, value, written as Unix time); it is stale, not gone, past the
# soft expiry. An entry stored by ResponseCache.put has no write time: (soft expiry, value). An entry of
# data that writes change (a versioned prefix) has a fourth part, its stamp: the versions of its
# prefix and group read before it was computed (docs/cache.md#writes-are-never-hidden).
Entry = tuple[Any, ...]
Stamp = tuple[bytes | None, ...]

# Deletes the lock only while it still holds our token, so a late owner never frees another's lock.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# Extends the lock only while it still holds our token.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# A compute lock lives this long unless its holder renews it: when the holder dies (SIGKILL, a lost
# instance), the callers waiting on it notice within this time and one of them computes instead.
LOCK_TTL_S = 5.0
LOCK_RENEW_S = 1.5
_POLL_FIRST_S, _POLL_MAX_S = 0.005, 0.05
# How long the callers already waiting on a failed computation may read its error; never a cache entry.
FAILURE_VISIBLE_MS = 1000
SCAN_BATCH = 500
# SimpleCache's threshold (CACHE_THRESHOLD in cache.setup): it holds no more keys than this at once.
SIMPLE_CACHE_KEYS = 1000


class StoreDown(Exception):
    """The store did not answer; the caller serves the request uncached."""


def _written_since(entry: Entry | None, newer_than: float | None) -> Entry | None:
    """`entry` when it was written at `newer_than` or later (any entry when None), else None."""
    if entry is None or newer_than is None:
        return entry
    return entry if len(entry) > 2 and entry[2] >= newer_than else None


def _prefix_and_group(base: str, key: str) -> list[str]:
    """`base` + the key's prefix, and + its prefix and group when it has one (`user:123:profile`)."""
    prefix, _, rest = key.partition(":")
    group, grouped, _ = rest.partition(":")
    return [base + prefix, f"{base}{prefix}:{group}"] if grouped else [base + prefix]


def redis_glob_escape(text: str) -> str:
    """Escape Redis MATCH metacharacters so `text` matches only itself."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RedisStore:
    """Entries through Flask-Caching's RedisCache; locks and indexes on the same client.

    Every entry written is also noted in an index: a sorted set per prefix (`{ns}:index:templates`)
    and, for keys with a group (`user:123:profile`: group `123`), one per prefix and group
    (`{ns}:index:user:123`), each member scored by when its entry expires. Invalidating a prefix, or a
    group (`pattern="123:*"`), reads its index and drops what it lists: the cost follows the entries
    dropped, not the size of the cache. Other patterns (the CLI's free globs) still SCAN.
    """

    name = "redis"

    def __init__(self, backend: Any, client: redis.Redis, breaker: Breaker, namespace: str) -> None:
        self.backend = backend
        self.client = client
        self.breaker = breaker
        self.entry_prefix = f"{namespace}:cache:"
        self.lock_prefix = f"{namespace}:lock:"
        self.failure_prefix = f"{namespace}:failed:"
        self.index_prefix = f"{namespace}:index:"
        self.version_prefix = f"{namespace}:version:"
        self.live_prefix = f"{namespace}:live:"  # streams followed live (blueprints/ai/relay.py)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, str] = {}  # lock key -> token, renewed while the computation runs
        self._held_lock = threading.Lock()
        self._keeper_pid = 0

    def get(self, key: str) -> Entry | None:
        if has_request_context():
            taken, raw = early.take(self.redis_key(key))
            if taken:  # the rate limiter's round trip already read it
                decoded, entry = self.decode(raw)
                if decoded:
                    return entry
        try:
            return self.backend.get(key)
        except REDIS_ERRORS as exc:
            raise self._down(exc) from exc

    def current(self, key: str) -> tuple[Entry | None, Stamp]:
        """(the entry, unless a write came after what it was computed from; the stamp of the data as
        it is now), in one round trip: a value computed after this read is stored with that stamp."""
        names = [self.redis_key(key), *self._versions_of(key)]
        try:
            if isinstance(self.client, redis.Redis):
                raw, *versions = self.client.mget(names)
            else:  # on Cluster the entry and its versions are in different hash slots
                raw, *versions = self.client.mget_nonatomic(names)
        except REDIS_ERRORS as exc:
            raise self._down(exc) from exc
        stamp = tuple(versions)
        entry = None
        if raw is not None:
            decoded, entry = self.decode(raw)
            if not decoded:  # the public way: only the backend's own GET decodes it
                entry = self._get_own(key)
            if entry is None or len(entry) < 4 or tuple(entry[3]) != stamp:
                entry = None  # computed before a write to its prefix or group: as if never stored
        return entry, stamp

    def _get_own(self, key: str) -> Entry | None:
        try:
            return self.backend.get(key)
        except REDIS_ERRORS as exc:
            raise self._down(exc) from exc

    def advance(self, prefix: str, pattern: str, ttl_s: int) -> None:
        """A write changed what `prefix` + `pattern` holds: every entry stamped before it is invalid,
        wherever it is. A new random version (never a counter: a version Redis lost and made again
        must not match an old stamp), kept longer than any entry."""
        version = self._version_of(prefix, pattern)
        try:
            self.client.set(version, secrets.token_hex(8), ex=ttl_s)
        except REDIS_ERRORS as exc:
            raise self._down(exc) from exc

    def _versions_of(self, key: str) -> list[str]:
        return _prefix_and_group(self.version_prefix, key)

    def _version_of(self, prefix: str, pattern: str) -> str:
        """The group's version for `group:*`, else (every entry, a free glob) the prefix's."""
        group, star = pattern[:-2], pattern[-2:]
        if star == ":*" and group and not any(char in group for char in "*?[]\\:"):
            return f"{self.version_prefix}{prefix}:{group}"
        return self.version_prefix + prefix

    def decode(self, raw: bytes) -> tuple[bool, Entry | None]:
        """An entry from the bytes another command read: (False, None) when it cannot be decoded here."""
        return cachelib.decode(self.backend, raw)

    def redis_key(self, key: str) -> str:
        """The entry's key in Redis."""
        return self.entry_prefix + key

    def set(self, key: str, entry: Entry, hard_ttl: int) -> None:
        try:
            self.backend.set(key, entry, timeout=hard_ttl)
            self._note(key, hard_ttl)
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)

    def _note(self, key: str, hard_ttl: int) -> None:
        """List the entry in its indexes, forgetting the ones that have expired meanwhile."""
        now_s = time.time()
        notes = self.client.pipeline(transaction=False)
        for index in self._indexes_of(key):
            notes.zadd(index, {key: now_s + hard_ttl})
            notes.zremrangebyscore(index, "-inf", now_s)
            notes.expire(index, hard_ttl, gt=True)  # the index lives as long as its longest entry
            notes.expire(index, hard_ttl, nx=True)
        notes.execute()

    def _indexes_of(self, key: str) -> list[str]:
        return _prefix_and_group(self.index_prefix, key)

    def index_of(self, prefix: str | None, pattern: str) -> str | None:
        """The index listing exactly the entries `prefix` + `pattern` matches, when there is one."""
        if prefix is None:
            return None
        if pattern == "*":
            return self.index_prefix + prefix
        group, star = pattern[:-2], pattern[-2:]
        if star == ":*" and group and not any(char in group for char in "*?[]\\:"):
            return f"{self.index_prefix}{prefix}:{group}"
        return None

    def acquire(self, key: str, ttl_s: float) -> str | None:
        """Take the key's compute lock (SET NX PX); the token proves ownership.

        The lock lives LOCK_TTL_S (at most `ttl_s`) and is renewed in the background while held.
        """
        token = secrets.token_hex(8)
        lock = self.lock_prefix + key
        try:
            taken = self.client.set(lock, token, nx=True, px=int(min(ttl_s, LOCK_TTL_S) * 1000))
        except REDIS_ERRORS as exc:
            raise self._down(exc) from exc
        if not taken:
            return None
        with self._held_lock:
            self._held[lock] = token
        self._keep_renewing()
        return token

    def release(self, key: str, token: str) -> None:
        lock = self.lock_prefix + key
        with self._held_lock:
            if self._held.get(lock) == token:
                del self._held[lock]
        try:
            self._release(keys=[lock], args=[token])
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)  # the lock expires by itself

    def _keep_renewing(self) -> None:
        if self._keeper_pid == os.getpid():
            return
        with self._held_lock:
            if self._keeper_pid == os.getpid():
                return
            self._keeper_pid = os.getpid()  # a forked worker starts its own
        threading.Thread(target=self._renew_forever, name="cache-locks", daemon=True).start()

    def _renew_forever(self) -> None:
        while True:
            time.sleep(LOCK_RENEW_S)
            with self._held_lock:
                held = list(self._held.items())
            for lock, token in held:
                try:
                    self._renew(keys=[lock], args=[token, int(LOCK_TTL_S * 1000)])
                except REDIS_ERRORS:
                    pass  # the lock expires; a waiter takes over, as after a crash

    def share_failure(self, key: str, error: ApiError) -> None:
        """Let the callers waiting on this computation answer with its error instead of retrying it."""
        failure = json.dumps([error.status, error.code, error.message, error.retry_after])
        try:
            self.client.set(self.failure_prefix + key, failure, px=FAILURE_VISIBLE_MS)
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)

    def wait(
        self, key: str, deadline: float, newer_than: float | None = None, versioned: bool = False
    ) -> Entry | None:
        """Poll until the entry appears (written at `newer_than` or later, when given; for a versioned
        prefix, computed after every write so far), the lock holder gives up, or the deadline passes."""
        pause = _POLL_FIRST_S
        read = (lambda: self.current(key)[0]) if versioned else (lambda: self.backend.get(key))
        try:
            while time.monotonic() < deadline:
                time.sleep(pause)
                if (entry := _written_since(read(), newer_than)) is not None:
                    return entry
                if not self.client.exists(self.lock_prefix + key):
                    return self._outcome(key, newer_than, read)
                pause = min(pause * 2, _POLL_MAX_S)
        except REDIS_ERRORS as exc:
            raise self._down(exc) from exc
        return None

    def _outcome(self, key: str, newer_than: float | None, read: Callable[[], Entry | None]) -> Entry | None:
        if (entry := _written_since(read(), newer_than)) is not None:
            return entry
        if (failure := self.client.get(self.failure_prefix + key)) is not None:
            status, code, message, retry_after = json.loads(failure)
            raise ApiError(status, message, code, retry_after=retry_after)
        return None

    def keys(self, prefix: str | None = None, pattern: str = "*") -> Iterator[str]:
        """Entry keys (without the namespace) under `prefix` (all when None) matching `pattern`."""
        skip = len(self.entry_prefix)
        for full in self.client.scan_iter(self._match(prefix, pattern), count=SCAN_BATCH):
            yield full.decode()[skip:]

    def delete(
        self, prefix: str | None = None, pattern: str = "*", scanned: Callable[[int], None] | None = None
    ) -> int:
        """UNLINK the matching entries: those an index lists, or else those a SCAN finds; never KEYS
        or FLUSHDB. Returns how many existed. `scanned(n)` hears of each n keys a SCAN looked at."""
        index = self.index_of(prefix, pattern)
        if index is None:
            return self._scan_delete(prefix, pattern, scanned)
        deleted = 0
        while members := self.client.zrange(index, 0, SCAN_BATCH - 1):
            # Two commands, not a pipeline: on Cluster the entries span hash slots, and the client
            # splits a many-key UNLINK by slot only outside a pipeline.
            deleted += self.client.unlink(*(self.entry_prefix + member.decode() for member in members))
            self.client.zrem(index, *members)  # not DEL: an entry noted meanwhile stays listed
        return deleted

    def keyspaces(self) -> list[redis.Redis]:
        """A client per keyspace a SCAN walks: this one, or on Cluster each primary's."""
        if isinstance(self.client, redis.Redis):
            return [self.client]
        return [self.client.get_redis_connection(node) for node in self.client.get_primaries()]

    def _scan_delete(self, prefix: str | None, pattern: str, scanned: Callable[[int], None] | None) -> int:
        match = self._match(prefix, pattern)
        deleted = 0
        for keyspace in self.keyspaces():  # one cursor each
            cursor = None
            while cursor != 0:
                cursor, found = keyspace.scan(cursor or 0, match=match, count=SCAN_BATCH)
                if found:  # through the client: on Cluster it splits the keys by hash slot
                    deleted += self.client.unlink(*found)
                if scanned is not None:
                    scanned(SCAN_BATCH)  # COUNT is what Redis looks at per call, give or take
        return deleted

    def _match(self, prefix: str | None, pattern: str) -> str:
        base = redis_glob_escape(self.entry_prefix)
        return base + "*" if prefix is None else f"{base}{redis_glob_escape(prefix)}:{pattern}"

    def _down(self, exc: BaseException) -> StoreDown:
        self.breaker.failed(exc)
        return StoreDown(str(exc))


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: Entry | None = None
        self.error: ApiError | None = None


class LocalStore:
    """SimpleCache (or nothing, when Redis is down) with single flight between this process's threads."""

    def __init__(self, backend: SimpleCache | None, name: str) -> None:
        self.backend = backend
        self.name = name
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        # SimpleCache cannot list its keys: the ones written are noted here (the CLI's listing).
        self._written: set[str] = set()

    def get(self, key: str) -> Entry | None:
        return self.backend.get(key) if self.backend is not None else None

    def current(self, key: str) -> tuple[Entry | None, Stamp]:
        """As RedisStore.current; this process's writes invalidate by deleting, so no stamp is needed."""
        return self.get(key), ()

    def set(self, key: str, entry: Entry, hard_ttl: int) -> None:
        if self.backend is not None:
            self.backend.set(key, entry, timeout=hard_ttl)
            with self._lock:
                self._written.add(key)
                if len(self._written) > 2 * SIMPLE_CACHE_KEYS:  # forget what SimpleCache evicted
                    self._written = {name for name in self._written if self.backend.has(name)}
        if (flight := self._flights.get(key)) is not None:
            flight.entry = entry  # waiters read it here even when nothing is stored

    def acquire(self, key: str, ttl_s: float) -> _Flight | None:
        with self._lock:
            if key in self._flights:
                return None
            flight = self._flights[key] = _Flight()
            return flight

    def release(self, key: str, token: _Flight) -> None:
        with self._lock:
            if self._flights.get(key) is token:
                del self._flights[key]
        token.done.set()

    def share_failure(self, key: str, error: ApiError) -> None:
        if (flight := self._flights.get(key)) is not None:
            flight.error = error

    def wait(
        self, key: str, deadline: float, newer_than: float | None = None, versioned: bool = False
    ) -> Entry | None:
        flight = self._flights.get(key)
        if flight is None:
            return _written_since(self.get(key), newer_than)
        flight.done.wait(max(0.0, deadline - time.monotonic()))
        if flight.entry is None and (error := flight.error) is not None:
            raise ApiError(
                error.status, error.message, error.code, retry_after=error.retry_after, **error.details
            )
        return flight.entry or _written_since(self.get(key), newer_than)

    def keys(self, prefix: str | None = None, pattern: str = "*") -> Iterator[str]:
        if self.backend is None:
            return iter(())
        match = "*" if prefix is None else f"{glob.escape(prefix)}:{pattern}"
        with self._lock:
            names = list(self._written)
        return (name for name in names if fnmatch.fnmatchcase(name, match) and self.backend.has(name))

    def delete(
        self, prefix: str | None = None, pattern: str = "*", scanned: Callable[[int], None] | None = None
    ) -> int:
        names = list(self.keys(prefix, pattern))
        deleted = sum(bool(self.backend.delete(name)) for name in names)
        with self._lock:
            self._written.difference_update(names)
        return deleted
