"""The cache under a real gunicorn with two workers and a real Redis."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.gunicorn import Gunicorn
from tests.support.services import REDIS_URL, RedisServer, require_redis
from tests.support.upstream import FakeModel

pytestmark = pytest.mark.slow


def _env(tmp_path, namespace, **extra) -> dict:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gunicorn.db'}",
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": namespace,
        "LOG_LEVEL": "WARNING",
        "GUNICORN_THREADS": "4",
        "RATE_LIMIT_PER_MINUTE": "100000",
        **{key: str(value) for key, value in extra.items()},
    }


def _generate(base: str, query: str) -> requests.Response:
    return requests.get(f"{base}/api/v1/ai/generate?{query}", timeout=30)


def test_miss_then_hits_with_the_same_body_across_workers(tmp_path, namespace):
    require_redis().close()
    with Gunicorn(_env(tmp_path, namespace, AI_LOCAL_LATENCY_MS=50), workers=2) as server:
        first = _generate(server.url, "prompt=hello&max_tokens=8")
        hits = [_generate(server.url, "max_tokens=8&prompt=hell%6F") for _ in range(10)]
        other = _generate(server.url, "prompt=hello&max_tokens=9")
    assert first.headers["X-Cache"] == "MISS"
    assert {hit.headers["X-Cache"] for hit in hits} == {"HIT"}
    spent_none = {**first.json()["usage"], "upstream_tokens": 0}  # a hit costs nothing upstream
    assert all(hit.json() == {**first.json(), "cached": True, "usage": spent_none} for hit in hits)
    assert other.headers["X-Cache"] == "MISS" and other.json()["text"] != first.json()["text"]


def test_concurrent_identical_misses_make_one_upstream_call(tmp_path, namespace):
    require_redis().close()
    with FakeModel(delay=1.0) as model:
        env = _env(tmp_path, namespace, AI_PROVIDER="openai", AI_BASE_URL=model.url)
        with Gunicorn(env, workers=2) as server, ThreadPoolExecutor(50) as pool:
            responses = list(pool.map(lambda _: _generate(server.url, "prompt=once"), range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert {r.json()["text"] for r in responses} == {"echo: once"}
    assert sorted(r.headers["X-Cache"] for r in responses).count("MISS") == 1
    assert model.calls == 1


def test_concurrent_misses_share_an_upstream_failure_which_is_not_cached(tmp_path, namespace):
    require_redis().close()
    # As many requests as either worker has threads: all of them are in flight during the failing call.
    with FakeModel(delay=1.0, status=500) as model:
        env = _env(tmp_path, namespace, AI_PROVIDER="openai", AI_BASE_URL=model.url, GUNICORN_THREADS=8)
        with Gunicorn(env, workers=2) as server, ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: _generate(server.url, "prompt=broken"), range(8)))
            assert model.calls == 1
            assert _generate(server.url, "prompt=broken").status_code == 502
    assert {r.status_code for r in responses} == {502}
    assert {r.json()["error"]["code"] for r in responses} == {"upstream_error"}
    assert model.calls == 2


def test_redis_stopping_bypasses_the_cache_and_heals_by_itself(tmp_path, namespace):
    redis_server = RedisServer().start()
    env = _env(tmp_path, namespace, REDIS_URL=redis_server.url, REDIS_RETRY_AFTER_S=1, AI_LOCAL_LATENCY_MS=50)
    try:
        with Gunicorn(env, workers=2) as server:
            pid = server.process.pid
            assert _generate(server.url, "prompt=warm").headers["X-Cache"] == "MISS"
            assert _generate(server.url, "prompt=warm").headers["X-Cache"] == "HIT"

            redis_server.stop()
            timings, statuses, caches = [], set(), set()
            for index in range(30):
                started = time.perf_counter()
                response = _generate(server.url, "prompt=warm" if index % 2 else f"prompt=new{index}")
                timings.append(time.perf_counter() - started)
                statuses.add(response.status_code)
                caches.add(response.headers["X-Cache"])
            assert statuses == {200}
            assert caches == {"BYPASS"}
            # The uncached path costs the 50 ms model latency; nothing waits for Redis timeouts.
            assert statistics.median(timings) < 0.2
            assert max(timings) < 1.0

            redis_server.start()  # same port, empty
            deadline, seen = time.monotonic() + 15, []
            while time.monotonic() < deadline and seen[-1:] != ["HIT"]:
                seen.append(_generate(server.url, "prompt=back").headers["X-Cache"])
                time.sleep(0.1)
            assert seen[-1:] == ["HIT"] and "MISS" in seen, seen
            time.sleep(1.5)  # every worker's back-off has passed
            after = {_generate(server.url, "prompt=back").headers["X-Cache"] for _ in range(6)}
            assert after == {"HIT"}
            assert server.process.pid == pid and server.process.poll() is None
    finally:
        redis_server.close()
