"""Serve a key from the cache: fresh, stale while one worker refreshes, or computed once for all."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from appfactory.cache.control import NONE, Control, written_at
from appfactory.cache.outcomes import BYPASS, HIT, MISS, STALE, clear_detail, note_detail, note_status
from appfactory.cache.stats import Counters
from appfactory.cache.stores import LocalStore, RedisStore, StoreDown
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

    def __init__(self, store: Store, breaker: Breaker | None, counters: Counters, lock_s: float) -> None:
        self.store = store
        self.bypass = LocalStore(None, "bypass")
        self.breaker = breaker
        self.counters = counters
        self.lock_s = lock_s

    def fetch(
        self, prefix: str, key: str, ttl: int, compute: Callable[[], Any], control: Control = NONE
    ) -> tuple[str, Any]:
        """(outcome, value) for `key`; `compute` runs only when no fresh value can be had, or when the
        request's `control` (its Cache-Control) will not take the entry there is."""
        with tracing.span("cache", ok=(NotCacheable,)):  # the model call, if any, is its child
            try:
                outcome, value = self._fetch(key, ttl, compute, control)
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

    def peek(self, prefix: str, key: str) -> Any | None:
        """A fresh value for `key`, counted and noted as a HIT; None, with nothing counted, when
        there is none (or the store is away): the caller then computes it and may `put` it."""
        if self.breaker is not None and not self.breaker.allow():
            return None
        try:
            with timed("cache"):
                entry = self.store.get(key)
        except StoreDown:
            return None
        if entry is None or entry[0] <= now():
            return None
        self._count(prefix, HIT)
        note_status(HIT)
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
                self.store.set(key, (soft, value), hard)
        except StoreDown:
            pass  # served, not stored: the next request computes it again

    def _fetch(self, key: str, ttl: int, compute: Callable[[], Any], control: Control) -> tuple[str, Any]:
        clear_detail()
        if self.breaker is not None and not self.breaker.allow():
            return self._bypass(key, ttl, compute, control)
        try:
            return self._serve(self.store, key, ttl, compute, None, control)
        except StoreDown:
            return self._bypass(key, ttl, compute, control)

    def _bypass(self, key: str, ttl: int, compute: Callable[[], Any], control: Control) -> tuple[str, Any]:
        """Served without Redis: computed (once in this process), never stored."""
        outcome, value = self._serve(self.bypass, key, ttl, compute, BYPASS, control)
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
    ) -> tuple[str, Any]:
        arrived = now()
        if control.no_store and not control.only_if_cached:  # neither read nor store
            note_detail("fwd=request")
            return forced or MISS, compute()
        entry = None
        if control.reads:
            with timed("cache"):
                entry = store.get(key)
            if self.breaker is not None and store is self.store:
                self.breaker.succeeded()
        usable = entry is not None and control.accepts(written_at(entry, ttl), arrived)
        if control.only_if_cached and not (usable and entry[0] > arrived):
            note_detail("detail=only-if-cached")
            raise ApiError(504, "No fresh cached answer, and the request said only-if-cached", "not_cached")
        if not usable:
            if control.plain:
                return self._fill(store, key, ttl, compute, forced)
            # The request's directives refused the entry: wait only for a value computed from now on.
            return self._fill(store, key, ttl, compute, forced, "fwd=request", newer_than=arrived)
        if entry[0] > arrived:
            note_detail("hit", f"ttl={int(entry[0] - arrived)}")
            return forced or HIT, entry[1]
        return self._refresh(store, key, ttl, compute, entry[1])

    def _fill(
        self,
        store: Store,
        key: str,
        ttl: int,
        compute: Callable[[], Any],
        forced: str | None,
        fwd: str = "fwd=uri-miss",
        newer_than: float | None = None,
    ) -> tuple[str, Any]:
        deadline = time.monotonic() + self.lock_s
        while True:
            token = store.acquire(key, self.lock_s)
            if token is not None:
                try:
                    return forced or MISS, self._compute(store, key, ttl, compute, fwd)
                except Exception as exc:  # those waiting get this answer instead of calling again
                    if (answer := as_api_error(exc)) is not None:
                        store.share_failure(key, answer)
                    raise
                finally:
                    store.release(key, token)
            entry = store.wait(key, deadline, newer_than)
            if entry is not None:
                tracing.note("aigen.cache.collapsed", True)  # another request's computation answered
                note_detail(fwd, "collapsed")
                return forced or HIT, entry[1]
            if time.monotonic() >= deadline:  # the owner is stuck: stop waiting for it
                return forced or MISS, self._compute(store, key, ttl, compute, fwd)

    def _refresh(
        self, store: Store, key: str, ttl: int, compute: Callable[[], Any], stale: Any
    ) -> tuple[str, Any]:
        token = store.acquire(key, self.lock_s)
        if token is None:
            note_detail("fwd=stale")
            return STALE, stale  # another worker is refreshing it
        try:
            return MISS, self._compute(store, key, ttl, compute, "fwd=stale")
        except NotCacheable:
            raise
        except Exception as exc:
            log.warning("Cache refresh of %s failed, serving the stale value: %s", key, exc)
            note_detail("fwd=stale")
            return STALE, stale
        finally:
            store.release(key, token)

    def _compute(self, store: Store, key: str, ttl: int, compute: Callable[[], Any], fwd: str) -> Any:
        value = compute()
        written = now()
        soft, hard = expiries(ttl)
        with timed("cache"):
            store.set(key, (soft, value, written), hard)
        note_detail(fwd, "stored")
        return value

    def invalidate(self, prefix: str, pattern: str = "*") -> int:
        """Delete the entries under `prefix` matching `pattern`; 0 when the store is down."""
        if self.breaker is not None and not self.breaker.allow():
            log.warning("Cache invalidation of %s:%s skipped: Redis is unavailable", prefix, pattern)
            return 0
        try:
            with timed("cache"):
                return self.store.delete(prefix, pattern)
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)
            log.warning("Cache invalidation of %s:%s failed: %s", prefix, pattern, exc)
            return 0
