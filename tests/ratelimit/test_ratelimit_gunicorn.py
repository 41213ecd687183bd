"""Rate limits under a real gunicorn with four workers: exact through Redis, alive without it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.services import REDIS_URL, RedisServer, require_redis

pytestmark = pytest.mark.slow

WORKERS = 4
PATH = "/api/v1/templates"


def _env(tmp_path, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "REDIS_URL": redis_url,
        "CACHE_NAMESPACE": key_namespace(),
        "RATE_LIMIT_PER_MINUTE": "60",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def _get(url: str, client: str | None = None, **headers: str) -> requests.Response:
    if client:
        headers["X-Forwarded-For"] = client
    return requests.get(url + PATH, headers=headers, timeout=10)


def _burst(url: str, client: str, count: int = 100, threads: int = 20) -> list[requests.Response]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: _get(url, client), range(count)))


def _statuses(responses: list[requests.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory):
    """The service on the machine's Redis behind one trusted proxy: X-Forwarded-For is the client."""
    require_redis()
    env = _env(tmp_path_factory.mktemp("proxy"), REDIS_URL, TRUSTED_PROXIES="1")
    with Gunicorn(env, workers=WORKERS) as server:
        yield server


def test_exactly_the_limit_succeeds_across_workers(behind_proxy):
    responses = _burst(behind_proxy.url, "203.0.113.10")
    assert _statuses(responses) == {200: 60, 429: 40}
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "rate_limited"
            assert response.headers["X-RateLimit-Remaining"] == "0"
        else:
            assert "Retry-After" not in response.headers
        assert response.headers["X-RateLimit-Limit"] == "60"
        assert response.headers["RateLimit-Policy"] == '"default";q=60;w=60'


def test_remaining_goes_down_by_one_per_request(behind_proxy):
    remaining = [
        int(_get(behind_proxy.url, "203.0.113.11").headers["X-RateLimit-Remaining"]) for _ in range(8)
    ]
    assert remaining == list(range(59, 51, -1))


def test_the_last_hop_is_the_client_behind_one_proxy(behind_proxy):
    first = _get(behind_proxy.url, "198.51.100.1, 203.0.113.12")
    spoofed = _get(behind_proxy.url, "198.51.100.2, 203.0.113.12")
    other = _get(behind_proxy.url, "198.51.100.1, 203.0.113.13")
    assert first.headers["X-RateLimit-Remaining"] == "59"
    assert spoofed.headers["X-RateLimit-Remaining"] == "58"
    assert other.headers["X-RateLimit-Remaining"] == "59"


def test_forwarded_for_buys_nothing_without_trusted_proxies(tmp_path):
    require_redis()
    with Gunicorn(_env(tmp_path, REDIS_URL, TRUSTED_PROXIES="0"), workers=WORKERS) as server:
        remaining = [
            _get(server.url, f"198.51.100.{n}").headers["X-RateLimit-Remaining"] for n in range(1, 6)
        ]
    assert remaining == ["59", "58", "57", "56", "55"]


def _wait_for_shared_limits(url: str, timeout: float = 15.0) -> float:
    """Seconds until 40 responses in a row count in Redis (limit 60, not a worker's 15).

    Forty new connections reach every one of the four workers with near certainty, so none is
    still counting in memory when the exactness check starts.
    """
    started = time.monotonic()
    streak = 0
    while streak < 40:
        assert time.monotonic() - started < timeout, "rate limits did not return to Redis"
        response = _get(url, f"192.0.2.{streak + 100}")
        streak = streak + 1 if response.headers["X-RateLimit-Limit"] == "60" else 0
        time.sleep(0.01)
    return time.monotonic() - started


def test_redis_outage_falls_back_per_worker_and_recovers(tmp_path):
    redis = RedisServer().start()
    env = _env(tmp_path, redis.url, TRUSTED_PROXIES="1", REDIS_RETRY_AFTER_S="1")
    try:
        with Gunicorn(env, workers=WORKERS) as server:
            assert _get(server.url, "203.0.113.20").headers["X-RateLimit-Limit"] == "60"

            redis.stop()
            during = _burst(server.url, "203.0.113.21")
            counts = _statuses(during)
            assert set(counts) == {200, 429}, counts  # no request failed for want of Redis
            # Each worker allows its share (60 / 4); together never more than the limit.
            assert 15 <= counts[200] <= 60
            assert {r.headers["X-RateLimit-Limit"] for r in during} == {"15"}
            health = requests.get(server.url + "/health", timeout=10).json()
            assert health["rate_limit_storage"] == "memory-fallback"

            redis.start()
            assert _wait_for_shared_limits(server.url) < 10
            after = _burst(server.url, "203.0.113.22")
            assert _statuses(after) == {200: 60, 429: 40}
            health = requests.get(server.url + "/health", timeout=10).json()
            assert health["rate_limit_storage"] == "redis"
            log = server.log()
    finally:
        redis.close()
    down = log.count("Rate limits on Redis unavailable")
    assert 1 <= down <= WORKERS  # one warning per worker and transition, not one per request
    assert 1 <= log.count("Rate limits on Redis available again") <= WORKERS
