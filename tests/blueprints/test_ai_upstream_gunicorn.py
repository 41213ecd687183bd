"""Under a real gunicorn: slow model calls never starve fast requests; single flight outlives its leader."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from bench import probes
from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.services import REDIS_URL, require_redis
from tests.support.upstream import FakeModel

pytestmark = pytest.mark.slow

GENERATE = "/api/v1/ai/generate"


def _get(url: str, path: str, timeout: float = 30) -> tuple[int, dict, dict, float]:
    """One GET over a fresh connection: status, headers, body, seconds it took."""
    parts = urlsplit(url)
    started = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        return (
            response.status,
            dict(response.getheaders()),
            json.loads(body or b"{}"),
            time.monotonic() - started,
        )
    finally:
        conn.close()


def _env(tmp_path, model: FakeModel, namespace: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": namespace,
        "AI_PROVIDER": "openai",
        "AI_BASE_URL": model.url,
        "RATE_LIMIT_PER_MINUTE": "100000",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def test_a_burst_of_slow_generations_leaves_hits_and_probes_answering(tmp_path):
    require_redis()
    with FakeModel(delay=3.0) as model:
        with Gunicorn(_env(tmp_path, model, key_namespace()), workers=2) as server:
            assert _get(server.url, f"{GENERATE}?prompt=warm")[0] == 200  # the HIT's entry, 3 s
            burst: list[tuple] = []
            with ThreadPoolExecutor(40) as pool:
                futures = [pool.submit(_get, server.url, f"{GENERATE}?prompt=slow-{n}") for n in range(40)]
                time.sleep(0.6)  # the burst is in: every call waits on the model
                fast = {
                    path: _get(server.url, path, timeout=10)
                    for path in (
                        f"{GENERATE}?prompt=warm",
                        "/health/live",
                        "/health/ready",
                        "/api/v1/templates",
                    )
                }
                burst = [future.result() for future in futures]
    for path, (status, _, _, took) in fast.items():
        assert status == 200, (path, fast[path])
        assert took < 0.25, f"{path} took {took:.3f} s during the burst"
    assert fast[f"{GENERATE}?prompt=warm"][1]["X-Cache"] == "HIT"
    assert [answer[0] for answer in burst] == [200] * 40  # every call admitted: none waits on a thread


def _ask_and_forget(url: str, path: str) -> None:
    """The leader's request: its server is killed while it waits, so no answer comes."""
    try:
        _get(url, path)
    except OSError:
        pass


def test_when_the_instance_computing_a_miss_dies_another_takes_over(tmp_path):
    require_redis()
    namespace = key_namespace()
    with FakeModel(delay=3.0) as model:
        leader = Gunicorn(_env(tmp_path, model, namespace), workers=1).start()
        other = Gunicorn(_env(tmp_path, model, namespace), workers=1).start()
        try:
            path = f"{GENERATE}?prompt=orphaned"
            threading.Thread(target=_ask_and_forget, args=(leader.url, path), daemon=True).start()
            deadline = time.monotonic() + 5
            while model.calls == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert model.calls == 1  # the leader holds the lock and waits on the model
            with ThreadPoolExecutor(3) as pool:
                waiting = [pool.submit(_get, other.url, path) for _ in range(3)]
                time.sleep(0.3)  # they wait on the leader's lock
                killed = time.monotonic()
                for pid in [*probes.workers(leader.process.pid), leader.process.pid]:
                    os.kill(pid, signal.SIGKILL)
                answers = [future.result() for future in waiting]
            took = time.monotonic() - killed
        finally:
            leader.close()
            other.close()
    assert [answer[0] for answer in answers] == [200, 200, 200]
    assert model.calls == 2  # the leader's call, then one taker's: not one each
    assert took < 3.0 + 5.0 + 2.0, f"answered {took:.1f} s after the leader died"


def test_flaky_throttling_and_silent_model_servers_under_gunicorn(tmp_path, silent_server):
    require_redis()
    with FakeModel(status=lambda prompt, before: 503 if before == 0 else 200) as model:
        env = _env(tmp_path, model, key_namespace(), AI_RETRIES="2")
        with Gunicorn(env, workers=2) as server:
            flaky = [_get(server.url, f"{GENERATE}?prompt=flaky-{n}") for n in range(6)]
            assert [answer[0] for answer in flaky] == [200] * 6  # each failed once, then was retried
            model.status, model.headers = 429, {"Retry-After": "1"}
            throttled = _get(server.url, f"{GENERATE}?prompt=throttled")
    assert throttled[0] == 503 and throttled[2]["error"]["code"] == "upstream_busy"
    assert throttled[1]["Retry-After"] == "1"

    silent = {
        **_env(tmp_path, model, key_namespace()),
        "AI_BASE_URL": f"http://127.0.0.1:{silent_server}/v1",
        "AI_TIMEOUT_S": "0.5",
        "AI_BREAKER_FAILURES": "2",
    }
    with Gunicorn(silent, workers=1) as server:  # one worker: its breaker is the one every request meets
        first = [_get(server.url, f"{GENERATE}?prompt=silent-{n}") for n in range(3)]
        assert {answer[0] for answer in first} <= {503, 504}
        later = [_get(server.url, f"{GENERATE}?prompt=silent-later-{n}") for n in range(6)]
    for status, headers, body, took in later:
        assert (status, body["error"]["code"]) == (503, "upstream_unavailable")
        assert int(headers["Retry-After"]) >= 1
        assert took < 0.25, f"answered after {took:.3f} s with the breaker open"
