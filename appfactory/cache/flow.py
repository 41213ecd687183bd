"""Serve a key from the cache: fresh, stale while one worker refreshes, or computed once for all."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from appfactory.cache.control import NONE, Control, written_at
from appfactory.cache.outcomes import BYPASS, HIT, MISS, STALE, clear_detail, note_detail, note_status
from appfactory.cache.stats import Counters
from appfactory.cache.stores import LocalStore, RedisStore, Stamp, StoreDown
from appfactory.observability import tracing
from appfactory.observability.metrics import record_cache
from appfactory.observability.timing import timed
from appfactory.redis.client import REDIS_ERRORS
from appfactory.resilience.breaker import Breaker
from appfactory.web.errors import ApiError, as_api_error

log = logging.getLogger(__name__)

JITTER = 0.1  # ±10% so entries written together do not expire together
STALE_SHARE = 0.1  # an entry may be served stale for 10% of its TTL (at least a second) past its expiry

Store = RedisStore | LocalStore
now = time.time  # wall clock, shared by every worker and instance; tests replace it
_READ_AHEAD = {"aigen.cache.read_ahead": True}  # the entry came with the limiter's round trip


def _not_cached() -> ApiError:
    note_detail("detail=only-if-cached")
    return ApiError(504, "No fresh cached answer, and the request said only-if-cached", "not_cached")


class NotCacheable(Exception):
    """Raised by a compute function whose result is returned to its caller but never stored."""

    def __init__(self, value: Any) -> None:
        super().__init__("not cacheable")
        self.value = value


def expiries(ttl: int) -> tuple[float, int]:
    """(soft expiry as Unix time, hard TTL in seconds) for an entry written now."""
    soft = ttl * random.uniform(1 - JITTER, 1 + JITTER)
    return now() + soft, math.ceil(soft + max(1.0, ttl * STALE_SHARE))


class ResponseCache:
    """The cache's state for one app: stores, breaker, counters and the single-flight bound."""

    def __init__(
        self,
        store: Store,
        breaker: Breaker | None,
        counters: Counters,
        lock_s: float,
        version_ttl_s: int = 86_400,
    ) -> None:
        self.store = store
        self.bypass = LocalStore(None, "bypass")
        self.breaker = breaker
        self.counters = counters
        self.lock_s = lock_s
        self.version_ttl_s = version_ttl_s  # longer than any entry lives (setup.py)
        self.unannounced = Unannounced(self._announce, breaker.retry_after if breaker else 1.0)

    def fetch(
        self,
        prefix: str,
        key: str,
        ttl: int,
        compute: Callable[[], Any],
        control: Control = NONE,
        versioned: bool = False,
    ) -> tuple[str, Any]:
        """(outcome, value) for `key`; `compute` runs only when no fresh value can be had, or when the
        request's `control` (its Cache-Control) will not take the entry there is. `versioned`: writes
        change the value, and every entry carries the versions it was computed under (stores.py)."""
        with tracing.span("cache", ok=(NotCacheable,)):  # the model call, if any, is its child
            try:
                if versioned and self.unannounced.holds(prefix):  # this worker's write Redis missed
                    outcome, value = self._bypass(key, ttl, compute, control, versioned)
                else:
                    outcome, value = self._fetch(key, ttl, compute, control, versioned)
            except NotCacheable:
                self._count(prefix, MISS)
                raise
            self._count(prefix, outcome)
        return outcome, value

    def _count(self, prefix: str, outcome: str) -> None:
        """One lookup under `prefix`, in the cache's counters and in the metrics."""
        self.counters.add(prefix, outcome.lower())
        record_cache(prefix, hit=outcome in (HIT, STALE))
        tracing.note("aigen.cache.prefix", prefix)  # on the lookup's span (docs/tracing.md)
        tracing.note("aigen.cache.outcome", outcome)

    @property
    def shared(self) -> bool:
        """Entries live in Redis, where every worker and instance reads and invalidates them."""
        return isinstance(self.store, RedisStore)

    def answer_fresh(self, key: str, raw: bytes) -> tuple[bool, Any]:
        """(True, value) when `raw`, the entry for `key` read ahead of the view, is fresh: a HIT,
        counted and noted for X-Cache as `fetch` would.

        (False, None) otherwise, with nothing counted: the view then takes the usual way (`fetch`),
        which also serves a stale entry, or a missing one, as it always does.
        """
        if not self.shared or not self.breaker.allow():
            return False, None
        with tracing.span("cache", attributes=_READ_AHEAD):
            with timed("cache"):
                decoded, entry = self.store.decode(raw)
            if not decoded or entry is None or entry[0] <= now():
                return False, None
            self.breaker.succeeded()
            self._count(key.partition(":")[0], HIT)
        note_status(HIT)
        note_detail("hit", f"ttl={int(entry[0] - now())}")
        return True, entry[1]

    def peek(self, prefix: str, key: str, control: Control = NONE) -> Any | None:
        """A fresh value for `key` that the request's `control` takes, counted and noted as a HIT;
        None, with nothing counted, when there is none (or the store is away): the caller then
        computes it and may `put` it. `only-if-cached` without one: 504 not_cached."""
        entry = None
        if control.reads and (self.breaker is None or self.breaker.allow()):
            try:
                with timed("cache"):
                    entry = self.store.get(key)
            except StoreDown:
                entry = None
        arrived = now()
        if entry is None or entry[0] <= arrived or not control.accepts(written_at(entry, 0), arrived):
            if control.only_if_cached:
                raise _not_cached()
            note_detail("fwd=uri-miss" if control.plain else "fwd=request")
            return None
        self._count(prefix, HIT)
        note_status(HIT)
        note_detail("hit", f"ttl={int(entry[0] - arrived)}")
        return entry[1]

    def claim(self, key: str) -> tuple[bool, Any]:
        """(True, token) when this request computes `key` itself, holding its single-flight lock
        (token None: the store is away, there is nothing to hold); (False, None) when another request
        is computing it: `fetch` then waits for that value. Give the token back with `release`."""
        if self.breaker is not None and not self.breaker.allow():
            return True, None
        try:
            with timed("cache"):
                token = self.store.acquire(key, self.lock_s)
        except StoreDown:
            return True, None
        return token is not None, token

    def release(self, key: str, token: Any) -> None:
        if token is not None:
            self.store.release(key, token)

    def put(self, prefix: str, key: str, ttl: int, value: Any) -> None:
        """Store a value computed outside `fetch` (a stream, once it ended) as a fresh entry."""
        self._count(prefix, MISS)
        if self.breaker is not None and not self.breaker.allow():
            return
        soft, hard = expiries(ttl)
        try:
            with timed("cache"):
                self.store.set(key, (soft, value, now()), hard)
        except StoreDown:
            pass  # served, not stored: the next request computes it again

    def _fetch(
        self, key: str, ttl: int, compute: Callable[[], Any], control: Control, versioned: bool
    ) -> tuple[str, Any]:
        clear_detail()
        if self.breaker is not None and not self.breaker.allow():
            return self._bypass(key, ttl, compute, control, versioned)
        try:
            return self._serve(self.store, key, ttl, compute, None, control, versioned)
        except StoreDown:
            return self._bypass(key, ttl, compute, control, versioned)

    def _bypass(
        self, key: str, ttl: int, compute: Callable[[], Any], control: Control, versioned: bool
    ) -> tuple[str, Any]:
        """Served without Redis: computed (once in this process), never stored."""
        outcome, value = self._serve(self.bypass, key, ttl, compute, BYPASS, control, versioned)
        note_detail("fwd=bypass", "detail=redis-unavailable")
        return outcome, value

    def _serve(
        self,
        store: Store,
        key: str,
        ttl: int,
        compute: Callable[[], Any],
        forced: str | None,
        control: Control,
        versioned: bool = False,
    ) -> tuple[str, Any]:
        arrived = now()
        if control.no_store and not control.only_if_cached:  # neither read nor store
            note_detail("fwd=request")
            return forced or MISS, compute()
        entry, stamp = None, None
        if control.reads or versioned:
            with timed("cache"):  # a versioned value's stamp is read before it is computed
                entry, stamp = store.current(key) if versioned else (store.get(key), None)
            if self.breaker is not None and store is self.store:
                self.breaker.succeeded()
            if not control.reads:
                entry = None
        usable = entry is not None and control.accepts(written_at(entry, ttl), arrived)
        if control.only_if_cached and not (usable and entry[0] > arrived):
            raise _not_cached()
        if not usable:
            if control.plain:
                return self._fill(store, key, ttl, compute, forced, stamp)
            # The request's directives refused the entry: wait only for a value computed from now on.
            return self._fill(store, key, ttl, compute, forced, stamp, "fwd=request", newer_than=arrived)
        if entry[0] > arrived:
            note_detail("hit", f"ttl={int(entry[0] - arrived)}")
            return forced or HIT, entry[1]
        return self._refresh(store, key, ttl, compute, entry[1], stamp)

    def _fill(
        self,
        store: Store,
        key: str,
        ttl: int,
        compute: Callable[[], Any],
        forced: str | None,
        stamp: Stamp | None,
        fwd: str = "fwd=uri-miss",
        newer_than: float | None = None,
    ) -> tuple[str, Any]:
        deadline = time.monotonic() + self.lock_s
        while True:
            token = store.acquire(key, self.lock_s)
            if token is not None:
                try:
                    return forced or MISS, self._compute(store, key, ttl, compute, fwd, stamp)
                except Exception as exc:  # those waiting get this answer instead of calling again
                    if (answer := as_api_error(exc)) is not None and answer.status != 429:
                        store.share_failure(key, answer)  # not a 429: the caller's own budget
                    raise
                finally:
                    store.release(key, token)
            entry = store.wait(key, deadline, newer_than, versioned=stamp is not None)
            if entry is not None:
                tracing.note("aigen.cache.collapsed", True)  # another request's computation answered
                note_detail(fwd, "collapsed")
                return forced or HIT, entry[1]
            if time.monotonic() >= deadline:  # the owner is stuck: stop waiting for it
                return forced or MISS, self._compute(store, key, ttl, compute, fwd, stamp)

    def _refresh(
        self, store: Store, key: str, ttl: int, compute: Callable[[], Any], stale: Any, stamp: Stamp | None
    ) -> tuple[str, Any]:
        token = store.acquire(key, self.lock_s)
        if token is None:
            note_detail("fwd=stale")
            return STALE, stale  # another worker is refreshing it
        try:
            return MISS, self._compute(store, key, ttl, compute, "fwd=stale", stamp)
        except NotCacheable:
            raise
        except Exception as exc:
            log.warning("Cache refresh of %s failed, serving the stale value: %s", key, exc)
            note_detail("fwd=stale")
            return STALE, stale
        finally:
            store.release(key, token)

    def _compute(
        self, store: Store, key: str, ttl: int, compute: Callable[[], Any], fwd: str, stamp: Stamp | None
    ) -> Any:
        value = compute()
        written = now()
        soft, hard = expiries(ttl)
        entry = (soft, value, written) if stamp is None else (soft, value, written, stamp)
        with timed("cache"):
            store.set(key, entry, hard)
        note_detail(fwd, "stored")
        return value

    def invalidate(self, prefix: str, pattern: str = "*") -> int:
        """After a write (committed): every entry under `prefix` matching `pattern` computed before it
        is invalid from now on, and deleted. Returns how many were deleted; 0 when Redis does not
        answer: the write is then announced as soon as Redis answers again (`Unannounced`), and until
        then this worker reads nothing of `prefix` from the cache."""
        if not self.shared:
            return self.store.delete(prefix, pattern)
        if self.breaker is not None and not self.breaker.allow():
            log.warning("Cache invalidation of %s:%s deferred: Redis is unavailable", prefix, pattern)
            self.unannounced.add(prefix, pattern)
            return 0
        try:
            with timed("cache"):
                return self._announce(prefix, pattern)
        except (StoreDown, *REDIS_ERRORS) as exc:
            self.breaker.failed(exc)
            log.warning("Cache invalidation of %s:%s deferred: %s", prefix, pattern, exc)
            self.unannounced.add(prefix, pattern)
            return 0

    def _announce(self, prefix: str, pattern: str) -> int:
        """Advance the version (what makes older entries invalid), then delete what it lists."""
        self.store.advance(prefix, pattern, self.version_ttl_s)
        try:
            return self.store.delete(prefix, pattern)
        except REDIS_ERRORS as exc:
            log.warning("Cache entries of %s:%s not deleted (invalid all the same): %s", prefix, pattern, exc)
            return 0


class Unannounced:
    """Writes whose invalidation Redis missed, in this process: announced again every `retry_s` by a
    background thread until Redis takes them. Meanwhile `holds(prefix)`: this worker bypasses the
    cache for that prefix, so it never serves an entry its own write made invalid."""

    def __init__(self, announce: Callable[[str, str], int], retry_s: float) -> None:
        self.announce = announce
        self.retry_s = retry_s
        self._pending: dict[tuple[str, str], None] = {}  # ordered, no duplicates
        self._lock = threading.Lock()
        self._runner: threading.Thread | None = None

    def holds(self, prefix: str) -> bool:
        pending = self._pending
        return bool(pending) and any(held == prefix for held, _ in pending)

    def add(self, prefix: str, pattern: str) -> None:
        with self._lock:
            self._pending[(prefix, pattern)] = None
            if self._runner is None or not self._runner.is_alive():
                self._runner = threading.Thread(target=self._retry, name="cache-announce", daemon=True)
                self._runner.start()

    def _retry(self) -> None:
        while True:
            time.sleep(self.retry_s)
            with self._lock:
                pending = list(self._pending)
            for prefix, pattern in pending:
                try:
                    self.announce(prefix, pattern)
                except (StoreDown, *REDIS_ERRORS):
                    break  # Redis still away: all of them again after the next pause
                with self._lock:
                    self._pending.pop((prefix, pattern), None)
                log.warning("Cache invalidation of %s:%s announced after Redis came back", prefix, pattern)
            with self._lock:
                if not self._pending:
                    self._runner = None
                    return
