"""Rate-limit counters: one Lua call per hit on Redis, this worker's share in memory without it."""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

from flask import g, has_request_context
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.storage.base import SlidingWindowCounterSupport
from prometheus_client import Gauge

from appfactory.breaker import Breaker
from appfactory.redis_client import PIGGYBACK, PIGGYBACKED, REDIS_ERRORS, PinnedScript
from appfactory.timing import record

fallback_active = Gauge(
    "aigen_ratelimit_fallback_active",
    "1 while rate limits are counted in worker memory because Redis does not answer",
    multiprocess_mode="livemax",
)

# limits' acquire_sliding_window.lua, answering with the window as well as the verdict so the
# response headers need no second round trip (limits' own script answers only true/false). KEYS[3],
# when given, is a cache entry the request will read: it comes back in the same round trip.
_ACQUIRE = """
local piggyback = false
if KEYS[3] then
    piggyback = redis.call('get', KEYS[3])
end
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local amount = tonumber(ARGV[3])
local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
if current_ttl > 0 and current_ttl < expiry then
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
end
local previous_count = tonumber(redis.call('get', KEYS[1])) or 0
local previous_ttl = math.max(tonumber(redis.call('pttl', KEYS[1])) or 0, 0)
local current_count = tonumber(redis.call('get', KEYS[2])) or 0
current_ttl = math.max(tonumber(redis.call('pttl', KEYS[2])) or 0, 0)
local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
if amount > limit or weighted + amount > limit then
    return {0, previous_count, previous_ttl, current_count, current_ttl, piggyback}
end
if redis.call('exists', KEYS[2]) == 1 then
    current_count = redis.call('incrby', KEYS[2], amount)
else
    redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
    current_count = amount
    current_ttl = expiry * 2
end
return {1, previous_count, previous_ttl, current_count, current_ttl, piggyback}
"""


class Window(NamedTuple):
    """A client's window right after a hit: what the response headers report."""

    limit: int
    remaining: int
    reset_at: float
    expiry: int


def window_of(limit: int, expiry: int, counts: tuple[int, float, int, float]) -> Window:
    """Remaining hits and the next reset, as limits' sliding-window counter computes them."""
    previous_count, previous_ttl, current_count, current_ttl = counts
    weighted = previous_count * previous_ttl / expiry + current_count
    # `x % period or period`: a TTL that is a whole number of periods (a window opened this very
    # millisecond has exactly 2 x expiry left) is a full period away, not "now".
    reset_in = math.inf
    if previous_count:
        period = expiry / previous_count
        reset_in = previous_ttl % period or period
    if current_count:
        reset_in = min(reset_in, current_ttl % expiry or expiry)
    reset_in = 0.0 if reset_in == math.inf else reset_in
    return Window(limit, max(0, limit - math.floor(weighted)), time.time() + reset_in, expiry)


def last_window(key: str) -> Window | None:
    """The window the current request's hit on `key` left behind, if any."""
    stored = g.get("rate_window")
    return stored[1] if stored and stored[0] == key else None


class _RedisWindows(RedisStorage):
    """limits' Redis storage with an acquire that also returns the window."""

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_acquire_window = PinnedScript(self.get_connection(), _ACQUIRE)

    def acquire_window(
        self, key: str, limit: int, expiry: int, amount: int, piggyback: str | None = None
    ) -> tuple[bool, tuple[int, float, int, float], bytes | None]:
        """The hit's verdict and window, and the value of the key `piggyback` names (None if absent)."""
        keys = [
            self.prefixed_key(self._previous_window_key(key)),
            self.prefixed_key(self._current_window_key(key)),
        ]
        if piggyback is not None:
            keys.append(piggyback)
        acquired, previous, previous_ttl, current, current_ttl, value = self.lua_acquire_window(
            keys, [limit, expiry, amount]
        )
        counts = (int(previous), previous_ttl / 1000, int(current), current_ttl / 1000)
        return bool(acquired), counts, value


class LimitStorage(Storage, SlidingWindowCounterSupport):
    """Counters in Redis, shared by every worker; while Redis fails, each worker's share in memory."""

    STORAGE_SCHEME = ["aigen+redis", "aigen+rediss", "aigen+unix", "aigen+memory"]

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
        if not target.startswith("memory:"):
            self.redis = _RedisWindows(target, key_prefix=key_prefix, **options)
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
        if not has_request_context():
            return self._acquire(None, key, limit, expiry, amount)[0]
        state = g._get_current_object()  # one proxy lookup for the request's notes (also below)
        acquired, window = self._acquire(state, key, limit, expiry, amount)
        state.rate_window = (key, window)
        return acquired

    def _acquire(self, state: Any, key: str, limit: int, expiry: int, amount: int) -> tuple[bool, Window]:
        piggyback = state.pop(PIGGYBACK, None) if state is not None else None
        if self.redis is not None and self.breaker.allow():
            started = time.perf_counter()
            try:
                acquired, counts, value = self.redis.acquire_window(key, limit, expiry, amount, piggyback)
            except REDIS_ERRORS as exc:
                self._failed(exc)
            else:
                if state is not None:  # Server-Timing: the round trip that also read the cache entry
                    record("ratelimit", (time.perf_counter() - started) * 1000.0)
                self._succeeded()
                if piggyback is not None:
                    setattr(state, PIGGYBACKED, (piggyback, value))
                return acquired, window_of(limit, expiry, counts)
        share = self.share(limit)
        acquired = self.memory.acquire_sliding_window_entry(key, share, expiry, amount)
        return acquired, window_of(share, expiry, self.memory.get_sliding_window(key, expiry))

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

    def _active(self) -> Storage:
        shared = self.redis is not None and self.breaker.healthy
        return self.redis if shared else self.memory

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self._active().get_sliding_window(key, expiry)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.memory.clear_sliding_window(key, expiry)
        if self.redis is not None:
            self.redis.clear_sliding_window(key, expiry)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._active().incr(key, expiry, amount)

    def get(self, key: str) -> int:
        return self._active().get(key)

    def get_expiry(self, key: str) -> float:
        return self._active().get_expiry(key)

    def check(self) -> bool:
        return self._active().check()

    def reset(self) -> int | None:
        return self._active().reset()

    def clear(self, key: str) -> None:
        self._active().clear(key)
