"""The service under a real gunicorn with several workers, on PostgreSQL and SQLite."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bench import probes
from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.keys import bearer, issue_key
from tests.support.services import REDIS_URL
from tests.support.sockets import ESTABLISHED, LISTEN, listening_sockets, sockets_by_pid

pytestmark = pytest.mark.slow


def _env(database_url: str, **extra: str) -> dict[str, str]:
    # Several workers need the shared Redis (without it the service refuses more than one).
    return {
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": key_namespace(),
        **extra,
    }


def _exercise_api(base: str) -> None:
    user = requests.post(f"{base}/api/v1/users", json={"email": "a@b.co", "name": "A"}, timeout=10)
    assert user.status_code == 201
    key = bearer(user.json()["api_key"])
    template = {"name": "g", "body": "Hi {{who}}"}
    created = requests.post(f"{base}/api/v1/templates", json=template, headers=key, timeout=10)
    assert created.status_code == 201, created.text
    location = base + created.headers["Location"]
    assert requests.get(location, timeout=10).json()["variables"] == ["who"]
    assert requests.get(f"{base}/api/v1/templates", timeout=10).json()["total"] == 1
    rendered = requests.post(location + "/render", json={"variables": {"who": "Ada"}}, timeout=10)
    assert rendered.json()["text"] == "Hi Ada"
    assert requests.delete(location, timeout=10).status_code == 401
    assert requests.delete(location, headers=key, timeout=10).status_code == 204
    missing = requests.get(location, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = requests.post(
        f"{base}/api/v1/templates", data="{", headers={"Content-Type": "application/json", **key}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    health = requests.get(f"{base}/health", timeout=10)
    assert health.status_code == 200 and health.json()["database"] == "connected"
    assert health.headers["X-Process-Time"].endswith("ms")


def test_serves_on_sqlite_with_schema_migrated_by_the_master(tmp_path):
    url = f"sqlite:///{tmp_path / 'served.db'}"
    with Gunicorn(_env(url, LOG_LEVEL="INFO"), workers=2) as server:
        _exercise_api(server.url)
        assert server.log().count("Running upgrade  -> 0001") == 1


def test_serves_on_postgresql(postgres):
    with Gunicorn(_env(postgres.url), workers=2) as server:
        _exercise_api(server.url)


def test_serves_with_preload(postgres):
    with Gunicorn(_env(postgres.url, GUNICORN_CMD_ARGS="--preload"), workers=2) as server:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: requests.get(f"{server.url}/health").status_code, range(40)))
        assert statuses == [200] * 40


def test_connections_stay_within_the_pool_bounds_under_concurrency(postgres):
    workers, pool_size, overflow = 2, 2, 2
    env = _env(postgres.url, DB_POOL_SIZE=str(pool_size), DB_MAX_OVERFLOW=str(overflow), GUNICORN_THREADS="8")
    with Gunicorn(env, workers=workers) as server:
        key = bearer(issue_key(postgres.url))
        template = {"name": "p", "body": "b"}
        created = requests.post(f"{server.url}/api/v1/templates", json=template, headers=key, timeout=10)
        path = f"{server.url}{created.headers['Location']}"
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], postgres.connections())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(lambda _: requests.get(path, timeout=30).status_code, range(500)))
        done.set()
        sampler.join()
    assert statuses == [200] * 500
    assert 0 < peak[0] <= workers * (pool_size + overflow)


def test_database_down_at_start_still_serves_health(tmp_path):
    from tests.support.services import free_port

    env = _env(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    with Gunicorn(env, workers=2) as server:
        started = time.perf_counter()
        health = requests.get(f"{server.url}/health", timeout=10)
        assert time.perf_counter() - started < 2.5
        assert health.status_code == 503
        assert health.json()["database"] == "disconnected"
        assert requests.get(f"{server.url}/health/live", timeout=5).status_code == 200
        assert "migration at start failed" in server.log()


def test_a_silent_database_at_start_does_not_hold_the_start_up(silent_server):
    env = _env(f"postgresql://postgres@127.0.0.1:{silent_server}/none", DB_CONNECT_TIMEOUT="1")
    with Gunicorn(env, workers=2) as server:
        health = requests.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503
        assert health.json()["database"] == "disconnected"
        assert "migration at start failed" in server.log()


def _open_connections(url: str, count: int) -> list[requests.Session]:
    """`count` keep-alive connections, each used for one request and left open."""
    sessions = []
    for _ in range(count):
        session = requests.Session()
        assert session.get(f"{url}/health/live", timeout=10).status_code == 200
        sessions.append(session)
    return sessions


def _migrate_req() -> str | None:
    try:
        return Path("/proc/sys/net/ipv4/tcp_migrate_req").read_text().strip()
    except OSError:
        return None


def test_each_worker_listens_on_its_own_socket_and_connections_reach_every_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'spread.db'}"
    with Gunicorn(_env(url, GUNICORN_REUSE_PORT="true"), workers=2) as server:
        deadline = time.monotonic() + 15  # the server answers once one worker is up
        while listening_sockets(server.port) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = probes.workers(server.process.pid)
        assert len(workers) == 2
        assert listening_sockets(server.port) == 2
        assert sorted(sockets_by_pid(server.port, LISTEN, workers).values()) == [1, 1]
        sessions = _open_connections(server.url, 32)
        try:
            held = sockets_by_pid(server.port, ESTABLISHED, workers)
        finally:
            for session in sessions:
                session.close()
        # Hashed over two sockets, 32 connections all land on one with a chance of 2 in 2**32.
        assert sum(held.values()) == 32 and min(held.values()) >= 1, held
        migrate_req = _migrate_req()
        assert ("net.ipv4.tcp_migrate_req is 0" in server.log()) == (migrate_req == "0")


def test_one_shared_socket_when_reuse_port_is_off(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Gunicorn(_env(url, GUNICORN_REUSE_PORT="false", LOG_LEVEL="INFO"), workers=2) as server:
        assert listening_sockets(server.port) == 1
        assert "Listening on one socket shared by the workers" in server.log()
        assert "tcp_migrate_req" not in server.log()


def test_by_default_the_workers_share_one_socket(tmp_path):
    url = f"sqlite:///{tmp_path / 'default.db'}"
    with Gunicorn(_env(url), workers=2) as server:
        assert listening_sockets(server.port) == 1
        assert "tcp_migrate_req" not in server.log()
