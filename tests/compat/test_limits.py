"""compat.limits: the one-call acquire counts, refuses and states windows as limits' own way does."""

from __future__ import annotations

import time

from limits import RateLimitItemPerMinute
from limits.storage import RedisClusterStorage, RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from appfactory.compat.limits import RedisClusterWindows, RedisWindows, window_of
from tests.conftest import key_namespace
from tests.support.services import REDIS_URL, RedisClusterNodes, require_redis


def test_verdicts_counts_and_windows_match_limits_own(monkeypatch):
    require_redis()
    prefix = key_namespace()
    private = RedisWindows(REDIS_URL, key_prefix=f"{prefix}:private")
    public = RedisStorage(REDIS_URL, key_prefix=f"{prefix}:public")
    item = RateLimitItemPerMinute(5)
    strategy = SlidingWindowCounterRateLimiter(public)
    key = item.key_for("client")
    for _ in range(7):
        acquired, counts, read = private.acquire_window(key, 5, 60, 1)
        assert acquired == public.acquire_sliding_window_entry(key, 5, 60, 1)
        assert read == []
        assert counts[0::2] == public.get_sliding_window(key, 60)[0::2]  # the counts; TTLs differ by ms
        stats = strategy.get_window_stats(item, "client")
        window = window_of(5, 60, counts)
        assert window.remaining == stats.remaining
        # Where limits' own arithmetic says "now" for a window opened that very millisecond (2 x expiry
        # left, mod expiry), ours says a full window ahead: the one difference, on purpose.
        gap = window.reset_at - stats.reset_time
        assert abs(gap) < 1.0 or abs(gap - 60) < 1.0, gap
    private.storage.delete(*private.storage.keys(f"{prefix}:*"))


def test_on_a_cluster_the_one_call_acquire_counts_as_limits_cluster_storage():
    nodes = RedisClusterNodes(3).start()
    try:
        private = RedisClusterWindows(nodes.url, key_prefix="private")  # limits' scheme is the service's
        public = RedisClusterStorage(nodes.url, key_prefix="public")
        for client in ("a", "b", "c"):  # clients whose windows land in different slots
            for _ in range(7):
                acquired, counts, read = private.acquire_window(client, 5, 60, 1)
                assert acquired == public.acquire_sliding_window_entry(client, 5, 60, 1)
                assert read == []
                assert counts[0::2] == public.get_sliding_window(client, 60)[0::2]
        assert sum(count > 0 for count in nodes.key_counts()) >= 2  # the windows are spread
    finally:
        nodes.close()


def test_it_reads_the_key_it_is_given_in_the_same_call():
    require_redis()
    prefix = key_namespace()
    storage = RedisWindows(REDIS_URL, key_prefix=f"{prefix}:rl")
    storage.storage.set(f"{prefix}:entry", b"cached")
    try:
        assert storage.acquire_window("k", 5, 60, 1, [f"{prefix}:entry"])[2] == [b"cached"]
        assert storage.acquire_window("k", 5, 60, 1, [f"{prefix}:missing"])[2] == [None]
        both = [f"{prefix}:missing", f"{prefix}:entry"]
        assert storage.acquire_window("k", 5, 60, 1, both)[2] == [None, b"cached"]
    finally:
        storage.storage.delete(*storage.storage.keys(f"{prefix}:*"))


def test_a_window_opened_this_millisecond_resets_a_full_window_ahead():
    now = time.time()
    window = window_of(10, 60, (0, 0.0, 1, 120.0))
    assert 59.0 < window.reset_at - now <= 60.5 and window.remaining == 9
