"""Rate-limit counters: one Lua call per hit on Redis, this worker's share in memory without it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import g, has_request_context
from limits.storage import MemoryStorage, Storage
from limits.storage.base import SlidingWindowCounterSupport
from prometheus_client import Gauge

from appfactory import readahead
from appfactory.compat import limits as compat_limits
from appfactory.compat.limits import Window, window_of
from appfactory.observability import tracing
from appfactory.observability.timing import record
from appfactory.redis.client import REDIS_ERRORS
from appfactory.resilience.breaker import Breaker

fallback_active = Gauge(
    "aigen_ratelimit_fallback_active",
    "1 while rate limits are counted in worker memory because Redis does not answer",
    multiprocess_mode="livemax",
)

_ROUND_TRIP = {"db.system.name": "redis"}  # the span of the hit's round trip (docs/tracing.md)
_WINDOWS = "rate_windows"  # on g: limit key -> the Window the request's hit on it left


def last_window(key: str) -> Window | None:
    """The window the current request's hit on `key` left behind, if any."""
    stored = g._get_current_object().get(_WINDOWS)
    return stored.get(key) if stored else None


class LimitStorage(Storage, SlidingWindowCounterSupport):
    """Counters in Redis, shared by every worker; while Redis fails, each worker's share in memory."""

    STORAGE_SCHEME = [
        "aigen+redis",
        "aigen+rediss",
        "aigen+unix",
        "aigen+redis+sentinel",
        "aigen+redis+cluster",
        "aigen+memory",
    ]

    def __init__(
        self,
        uri: str,
        workers: int = 1,
        retry_after: float = 2.0,
        key_prefix: str = "aigen:rl",
        wrap_exceptions: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        target = uri.split("+", 1)[1]
        self.redis = None
        # On Cluster one script may touch one hash slot only: the window's keys share one, a cache entry
        # read along with them would not, so the hit reads nothing along there (it still returns the
        # window for the headers).
        self.reads_along = not target.startswith("redis+cluster:")
        if not target.startswith("memory:"):
            self.redis = compat_limits.redis_storage(target, key_prefix=key_prefix, **options)
        self.memory = MemoryStorage()
        self.workers = workers
        self.breaker = Breaker("Rate limits on Redis", retry_after)

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return REDIS_ERRORS

    def share(self, limit: int) -> int:
        """This worker's part of a limit: the workers together never allow more than the limit."""
        return max(1, limit // self.workers)

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        in_request = has_request_context()
        acquired, window = self._acquire(key, limit, expiry, amount, in_request)
        if in_request and window is not None:
            notes = g._get_current_object()
            windows = notes.get(_WINDOWS)
            if windows is None:
                windows = notes.rate_windows = {}
            windows[key] = window
        return acquired

    def _acquire(
        self, key: str, limit: int, expiry: int, amount: int, in_request: bool
    ) -> tuple[bool, Window | None]:
        if self.redis is not None and self.breaker.allow():
            try:
                with tracing.span("ratelimit", tracing.CLIENT, _ROUND_TRIP) as span:
                    acquired, window = self._acquire_on_redis(key, limit, expiry, amount, in_request)
                    span.set_attribute("aigen.ratelimit.allowed", acquired)
                    return acquired, window
            except REDIS_ERRORS as exc:
                self._failed(exc)
        share = self.share(limit)
        acquired = self.memory.acquire_sliding_window_entry(key, share, expiry, amount)
        if not compat_limits.PRIVATE:
            return acquired, None  # the headers ask Flask-Limiter for the window
        return acquired, window_of(share, expiry, self.memory.get_sliding_window(key, expiry))

    def _acquire_on_redis(
        self, key: str, limit: int, expiry: int, amount: int, in_request: bool
    ) -> tuple[bool, Window | None]:
        if not compat_limits.PRIVATE:
            acquired = self.redis.acquire_sliding_window_entry(key, limit, expiry, amount)
            self._succeeded()
            return acquired, None
        ahead = readahead.wanted() if in_request and self.reads_along else None
        started = time.perf_counter()
        acquired, counts, values = self.redis.acquire_window(
            key, limit, expiry, amount, ahead.keys if ahead is not None else ()
        )
        if in_request:  # Server-Timing: the round trip that also read ahead (appfactory/readahead.py)
            record("ratelimit", (time.perf_counter() - started) * 1000.0)
            if ahead is not None:
                ahead.deliver(values)
        self._succeeded()
        return acquired, window_of(limit, expiry, counts)

    def _failed(self, exc: BaseException) -> None:
        self.breaker.failed(exc)
        fallback_active.set(1)

    def _succeeded(self) -> None:
        if not self.breaker.healthy:
            self.breaker.succeeded()
            fallback_active.set(0)

    @property
    def mode(self) -> str:
        """'redis', 'memory' or 'memory-fallback', after a bounded ping when one is due."""
        if self.redis is None:
            return "memory"
        if self.breaker.allow():
            try:
                self.redis.get_connection().ping()
            except REDIS_ERRORS as exc:
                self._failed(exc)
            else:
                self._succeeded()
        return "redis" if self.breaker.healthy else "memory-fallback"

    def _read(self, operation: Callable[[Storage], Any]) -> Any:
        """`operation` on Redis while it answers; on the worker's memory while it does not, and when it
        fails now (a window read for the headers must not turn an answered request into a 500)."""
        if self.redis is not None and self.breaker.healthy:
            try:
                return operation(self.redis)
            except REDIS_ERRORS as exc:
                self._failed(exc)
        return operation(self.memory)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self._read(lambda storage: storage.get_sliding_window(key, expiry))

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.memory.clear_sliding_window(key, expiry)
        if self.redis is not None:
            self.redis.clear_sliding_window(key, expiry)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._read(lambda storage: storage.incr(key, expiry, amount))

    def get(self, key: str) -> int:
        return self._read(lambda storage: storage.get(key))

    def get_expiry(self, key: str) -> float:
        return self._read(lambda storage: storage.get_expiry(key))

    def _active(self) -> Storage:
        shared = self.redis is not None and self.breaker.healthy
        return self.redis if shared else self.memory

    def check(self) -> bool:
        return self._active().check()

    def reset(self) -> int | None:
        return self._active().reset()

    def clear(self, key: str) -> None:
        self._active().clear(key)
