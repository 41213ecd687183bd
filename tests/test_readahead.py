"""The read-ahead: a cache hit on Redis costs one round trip, the rate limiter's script reads its entry."""

from __future__ import annotations

import threading
from collections import Counter

import redis

from tests.support.services import RedisServer

PATH = "/api/v1/ai/generate?prompt=read-ahead"


def _client_commands(url: str, traffic) -> Counter[str]:
    """Commands clients sent while `traffic()` ran (MONITOR; the scripts' own calls left out)."""
    seen: Counter[str] = Counter()
    ready = threading.Event()
    sentinel = "read-ahead-test-done"

    def watch() -> None:
        with redis.Redis.from_url(url).monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if sentinel in command["command"]:
                    return
                if command.get("client_type") != "lua":
                    seen[command["command"].split()[0].upper()] += 1

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(5)
    traffic()
    redis.Redis.from_url(url).echo(sentinel)
    watcher.join(10)
    assert not watcher.is_alive()
    return seen


def test_a_hit_reads_its_entry_in_the_rate_limiters_round_trip(new_app):
    server = RedisServer().start()
    client = new_app(REDIS_URL=server.url).test_client()
    try:
        assert client.get(PATH).headers["X-Cache"] == "MISS"
        hits = []
        commands = _client_commands(server.url, lambda: hits.extend(client.get(PATH) for _ in range(5)))
        assert [r.headers["X-Cache"] for r in hits] == ["HIT"] * 5
        assert all(r.get_json()["cached"] is True for r in hits)
        assert [r.headers["X-RateLimit-Remaining"] for r in hits] == [str(10_000 - n) for n in range(2, 7)]
        assert commands["EVALSHA"] == 5
        assert commands["GET"] == 0
    finally:
        server.close()


def test_without_the_rate_limiter_a_hit_reads_the_entry_itself(new_app):
    server = RedisServer().start()
    client = new_app(REDIS_URL=server.url, RATELIMIT_ENABLED=False).test_client()
    try:
        assert client.get(PATH).headers["X-Cache"] == "MISS"
        hits = []
        commands = _client_commands(server.url, lambda: hits.extend(client.get(PATH) for _ in range(3)))
        assert [r.headers["X-Cache"] for r in hits] == ["HIT"] * 3
        assert "X-RateLimit-Remaining" not in hits[0].headers
        assert commands["GET"] == 3
    finally:
        server.close()
