"""PostgreSQL going away degrades the service, never crashes it, and it heals by itself."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.keys import bearer, issue_key
from tests.support.services import REDIS_URL, PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.failure]


@pytest.fixture
def pg_server():
    server = PostgresServer().start()
    yield server
    server.close()


def _wait_until(check, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(0.2)
    return time.monotonic() - started


def test_postgresql_restart_degrades_then_heals_without_a_service_restart(pg_server):
    env = {
        "DATABASE_URL": pg_server.url,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "REDIS_URL": REDIS_URL,  # several workers need the shared Redis
        "CACHE_NAMESPACE": key_namespace(),
    }
    with Gunicorn(env, workers=2) as server, requests.Session() as session:
        session.headers.update(bearer(issue_key(pg_server.url)))
        created = session.post(f"{server.url}/api/v1/templates", json={"name": "t", "body": "b"}, timeout=10)
        assert created.status_code == 201
        item = f"{server.url}{created.headers['Location']}"
        assert session.get(item, timeout=10).status_code == 200

        pg_server.stop()
        for _ in range(10):
            down = session.get(item, timeout=10)
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "database_unavailable"
        health = session.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["database"] == "disconnected"
        assert session.get(f"{server.url}/health/live", timeout=10).status_code == 200

        pg_server.start()
        _wait_until(lambda: session.get(item, timeout=10).status_code == 200, timeout=15)
        statuses = [session.get(item, timeout=10).status_code for _ in range(20)]
        assert statuses == [200] * 20
        assert session.get(f"{server.url}/health", timeout=10).json()["database"] == "connected"
        log = server.log()
        assert "Unhandled error" not in log and "Traceback" not in log
        assert "Database unavailable: OperationalError" in log
