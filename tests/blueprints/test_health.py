"""Health endpoints answer fast, whatever state the database is in."""

import time

import pytest

from appfactory import create_app
from tests.conftest import base_overrides
from tests.support.services import free_port


def test_healthy_on_a_live_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    report = response.get_json()
    assert report["status"] == "healthy"
    assert report["database"] == "connected"
    assert report["redis"] == "not_configured"
    assert report["cache"] == "simple"
    assert report["rate_limit_storage"] == "memory"
    assert set(report["pool"]) == {"size", "checked_out", "overflow"}
    assert client.get("/health/ready").status_code == 200


def _down_app(url):
    return create_app(base_overrides(DATABASE_URL=url, DB_CONNECT_TIMEOUT=5))


@pytest.mark.parametrize("target", ["refused", "silent"])
def test_unreachable_database_is_503_within_two_seconds(request, target):
    port = free_port() if target == "refused" else request.getfixturevalue("silent_server")
    client = _down_app(f"postgresql://postgres@127.0.0.1:{port}/none").test_client()
    started = time.perf_counter()
    response = client.get("/health")
    elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert response.get_json()["status"] == "unhealthy"
    assert response.get_json()["database"] == "disconnected"
    assert elapsed < 2.0
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200


def test_data_endpoints_answer_503_when_the_database_is_down():
    client = _down_app(f"postgresql://postgres@127.0.0.1:{free_port()}/none").test_client()
    response = client.get("/api/v1/templates/1")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "database_unavailable"
