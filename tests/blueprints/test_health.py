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


def _operator_pages(tmp_path, **overrides):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    return create_app(base_overrides(DATABASE_URL=url, **overrides)).test_client()


def test_health_and_metrics_answer_only_the_operators_networks(tmp_path):
    client = _operator_pages(tmp_path, OPS_ALLOW_NETWORKS="10.0.0.0/8")  # 127.0.0.1 is outside
    for path in ("/health", "/metrics"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.get_json()["error"]["code"] == "forbidden"
        assert client.get(path, headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 403  # made up
        assert client.get(path, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code != 403
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code in (200, 503)  # answered: the probes stay open


def test_operators_behind_a_listed_proxy_are_known_by_their_forwarded_address(tmp_path):
    client = _operator_pages(tmp_path, TRUSTED_PROXIES="127.0.0.1", OPS_ALLOW_NETWORKS="10.0.0.0/8")
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.4.5.6"}).status_code == 200
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 403


def test_by_default_loopback_and_private_networks_may_read_them(tmp_path):
    client = _operator_pages(tmp_path)
    for address in ("127.0.0.1", "::1", "10.0.0.9", "192.168.1.20", "::ffff:172.16.0.3"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200, address
    for address in ("203.0.113.7", "2001:db8::1"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 403, address
