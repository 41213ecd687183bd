"""limits: one Lua call that counts a hit, returns the client's window and reads the keys asked for.

limits' own sliding-window acquire answers only true or false, so the response headers would ask
Redis again for the window, and the cache would GET its entry in a third round trip. The script
below is limits' `acquire_sliding_window.lua` answering with the window's counts too, and reading
more keys when asked (a cache entry, the API keys' revocation version: appfactory/readahead.py); it
uses limits' window keys (private methods of its Redis storage) and the window arithmetic of its
sliding-window strategy. The public way is `acquire_sliding_window_entry`,
with the headers from Flask-Limiter's own window query (docs/compat.md).
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

from limits.storage import RedisClusterStorage, RedisStorage

from appfactory.compat import private_way
from appfactory.compat import redis as compat_redis

TESTED = "5.8.0"
PRIVATE = private_way("limits", TESTED)

# KEYS[1], KEYS[2]: the previous and current window; KEYS[3...], when given, keys to read as well.
ACQUIRE_AND_READ = """
local read = false
if #KEYS > 2 then
    read = redis.call('mget', unpack(KEYS, 3))
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
    return {0, previous_count, previous_ttl, current_count, current_ttl, read}
end
if redis.call('exists', KEYS[2]) == 1 then
    current_count = redis.call('incrby', KEYS[2], amount)
else
    redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
    current_count = amount
    current_ttl = expiry * 2
end
return {1, previous_count, previous_ttl, current_count, current_ttl, read}
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


class _WindowAcquire:
    """The one-call acquire, on a limits Redis storage whose `acquire_and_read` runs the script."""

    acquire_and_read: Any

    def acquire_window(
        self, key: str, limit: int, expiry: int, amount: int, reads: list[str] | tuple[str, ...] = ()
    ) -> tuple[bool, tuple[int, float, int, float], list[bytes | None]]:
        """The hit's verdict and window counts, and the value of each key in `reads` (None if absent)."""
        keys = [
            self.prefixed_key(self._previous_window_key(key)),
            self.prefixed_key(self._current_window_key(key)),
            *reads,
        ]
        acquired, previous, previous_ttl, current, current_ttl, values = self.acquire_and_read(
            keys, [limit, expiry, amount]
        )
        counts = (int(previous), previous_ttl / 1000, int(current), current_ttl / 1000)
        return bool(acquired), counts, [value or None for value in values or ()]


class RedisWindows(_WindowAcquire, RedisStorage):
    """limits' Redis storage with an acquire that also returns the window and reads more keys."""

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.acquire_and_read = compat_redis.script(self.get_connection(), ACQUIRE_AND_READ)


class RedisClusterWindows(_WindowAcquire, RedisClusterStorage):
    """limits' Cluster storage with the same acquire, returning the window; it reads no other key,
    since one script may touch one hash slot (the window's two keys share one: limits tags them)."""

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.acquire_and_read = self.get_connection().register_script(ACQUIRE_AND_READ)


def redis_storage(uri: str, **options: Any) -> RedisStorage:
    """limits' Redis storage, with the one-call acquire on the tested version (`RedisWindows`, or on
    Redis Cluster `RedisClusterWindows`); else limits' own."""
    if uri.startswith("redis+cluster:"):
        return (RedisClusterWindows if PRIVATE else RedisClusterStorage)(uri, **options)
    return (RedisWindows if PRIVATE else RedisStorage)(uri, **options)
