"""The serving model under a real gunicorn on its defaults: hundreds of model calls in flight per
instance, every caller answered, cache HITs and probes never waiting behind them (docs/serving.md)."""

from __future__ import annotations

import re
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.gunicorn import Gunicorn
from tests.support.services import REDIS_URL
from tests.support.upstream import FakeModel

pytestmark = pytest.mark.slow

GENERATE = "/api/v1/ai/generate"
# What a pool running dry or a breaker opening write in the log.
TROUBLE = re.compile(r"Too many connections|No connection available|unavailable|busy|Traceback")


def _env(postgres, namespace, model: FakeModel, **extra) -> dict:
    return {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": namespace,
        "AI_PROVIDER": "openai",
        "AI_BASE_URL": model.url,
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "LOG_LEVEL": "WARNING",
        **{key: str(value) for key, value in extra.items()},
    }


def _get(url: str, timeout: float = 60) -> tuple[int, float, requests.Response | None]:
    started = time.perf_counter()
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException:
        return 0, time.perf_counter() - started, None
    return response.status_code, time.perf_counter() - started, response


def _probe(url: str, rounds: int = 20) -> list[float]:
    """`rounds` sequential requests, each on a new connection: their round trips in ms."""
    times = []
    for _ in range(rounds):
        status, seconds, _ = _get(url, timeout=5)
        assert status == 200
        times.append(seconds * 1000)
        time.sleep(0.05)
    return times


def _hits_per_second(url: str, seconds: float = 1.5) -> float:
    count, end = 0, time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < end:
            assert session.get(url, timeout=5).headers["X-Cache"] == "HIT"
            count += 1
    return count / seconds


def test_300_concurrent_generations_at_a_5s_model_are_all_answered_while_hits_stay_fast(postgres, namespace):
    with FakeModel(delay=5.0) as model, Gunicorn(_env(postgres, namespace, model), workers=None) as server:
        hit = f"{server.url}{GENERATE}?prompt=warm"
        assert _get(hit)[0] == 200 and _get(hit)[2].headers["X-Cache"] == "HIT"
        before = _hits_per_second(hit)
        model.reset()
        results: list = []
        started = time.perf_counter()
        with ThreadPoolExecutor(300) as pool:
            futures = [pool.submit(_get, f"{server.url}{GENERATE}?prompt=burst-{n}") for n in range(300)]
            time.sleep(2.0)  # every call admitted and waiting on the model
            in_flight = model.calls
            hit_ms, live_ms = _probe(hit), _probe(f"{server.url}/health/live")
            results = [future.result() for future in futures]
        elapsed = time.perf_counter() - started
        after = _hits_per_second(hit)
        log = server.log()

    statuses = [status for status, _, _ in results]
    assert statuses == [200] * 300, sorted(set(statuses))
    assert model.calls == 300 and in_flight >= 250
    assert elapsed < 9.0  # one model time (5 s) plus admission on two cores
    assert statistics.median(hit_ms) < 50 and max(hit_ms) < 250, hit_ms
    assert statistics.median(live_ms) < 50 and max(live_ms) < 250, live_ms
    assert not TROUBLE.search(log), log[-3000:]
    assert after > before * 0.5, (before, after)
    print(
        f"\n300 generations in {elapsed:.2f} s; HIT median {statistics.median(hit_ms):.1f} ms, max "
        f"{max(hit_ms):.1f}; live median {statistics.median(live_ms):.1f}, max {max(live_ms):.1f}; "
        f"HITs/s before {before:.0f}, after {after:.0f}"
    )


def test_beyond_the_bound_callers_wait_then_get_503_with_retry_after(postgres, namespace):
    with FakeModel(delay=2.0) as model:
        env = _env(postgres, namespace, model, AI_MAX_CONCURRENCY=2, AI_QUEUE_WAIT_MS=600)
        with Gunicorn(env, workers=1) as server, ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda n: _get(f"{server.url}{GENERATE}?prompt=over-{n}"), range(6)))
            log = server.log()
    answered = [r for status, _, r in results if status == 200]
    refused = [(seconds, r) for status, seconds, r in results if status == 503]
    assert len(answered) == 2 and len(refused) == 4 and model.calls == 2
    for seconds, response in refused:
        assert response.json()["error"]["code"] == "upstream_busy"
        assert response.headers["Retry-After"] == "1"
        assert seconds >= 0.55  # it waited for a slot before it was refused
        assert "queue;dur=" in response.headers["Server-Timing"]
    assert log.count("Refused a generation") == 4


def test_sigterm_lets_the_generations_in_flight_finish(postgres, namespace):
    with FakeModel(delay=3.0) as model:
        server = Gunicorn(_env(postgres, namespace, model), workers=2).start()
        try:
            with ThreadPoolExecutor(50) as pool:
                futures = [pool.submit(_get, f"{server.url}{GENERATE}?prompt=drain-{n}") for n in range(50)]
                time.sleep(1.0)
                assert model.calls == 50
                server.process.send_signal(signal.SIGTERM)
                results = [future.result() for future in futures]
            server.process.wait(timeout=30)
        finally:
            server.close()
    assert [status for status, _, _ in results] == [200] * 50


def test_slow_header_clients_are_closed_and_logged_while_others_are_served(postgres, namespace, tmp_path):
    import socket

    with FakeModel() as model:
        env = _env(postgres, namespace, model, REQUEST_HEADER_TIMEOUT_S=2, LOG_LEVEL="INFO")
        with Gunicorn(env, workers=1) as server:
            slow, stop = [], threading.Event()
            for _ in range(64):
                conn = socket.create_connection(("127.0.0.1", server.port))
                conn.sendall(b"G")
                slow.append(conn)

            def trickle() -> None:  # one byte a second on every slow connection
                for byte in b"ET / HTTP/1.1\r\nHost: x\r\n":
                    if stop.wait(1.0):
                        return
                    for conn in slow:
                        try:
                            conn.sendall(bytes([byte]))
                        except OSError:
                            pass

            trickler = threading.Thread(target=trickle, daemon=True)
            trickler.start()
            time.sleep(0.5)
            normal = [_get(f"{server.url}/health/live", timeout=5)[0] for _ in range(8)]
            time.sleep(3.0)  # past the deadline
            closed = 0
            for conn in slow:
                conn.settimeout(2)
                try:
                    closed += conn.recv(1) == b""
                except OSError:
                    closed += 1
                conn.close()
            stop.set()
            log = server.log()
    assert normal == [200] * 8
    assert closed == 64
    assert log.count("Slow client: no complete request head within 2 s") == 64
