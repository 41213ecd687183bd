"""Client addresses under a real gunicorn: who the client is (TRUSTED_PROXIES), which budget it spends,
what its log line says, and whether it may read /health and /metrics (OPS_ALLOW_NETWORKS)."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.services import REDIS_URL, require_redis

pytestmark = pytest.mark.slow

PATH = "/api/v1/templates"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _env(tmp_path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "CACHE_NAMESPACE": key_namespace(),
        "RATE_LIMIT_PER_MINUTE": "60",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        **extra,
    }


def _get(url: str, forwarded: str | None = None, path: str = PATH) -> requests.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return requests.get(url + path, headers=headers, timeout=10)


def _logged_addresses(server: Gunicorn, responses: list[requests.Response]) -> list[str]:
    """The remote_addr of each response's request line, in order."""
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    by_id = {line["request_id"]: line for line in lines if line["logger"] == "appfactory.access"}
    return [by_id[response.headers["X-Request-ID"]]["remote_addr"] for response in responses]


@pytest.fixture(scope="module")
def unlisted_peer(tmp_path_factory):
    """Proxies and operators listed on 10.0.0.0/8: the tests' peer, 127.0.0.1, is neither."""
    env = _env(
        tmp_path_factory.mktemp("unlisted"),
        TRUSTED_PROXIES="10.0.0.0/8,192.168.1.5",
        OPS_ALLOW_NETWORKS="10.0.0.0/8",
    )
    with Gunicorn(env, workers=1) as server:
        yield server


def test_a_forged_forwarded_for_from_an_unlisted_peer_buys_no_budget_and_no_log_address(unlisted_peer):
    responses = [_get(unlisted_peer.url, f"198.51.100.{n}") for n in range(1, 6)]
    responses.append(_get(unlisted_peer.url, "10.0.0.1"))  # a listed proxy's address, made up
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["59", "58", "57", "56", "55", "54"]
    assert _logged_addresses(unlisted_peer, responses) == ["127.0.0.1"] * 6


def test_health_and_metrics_refuse_a_client_outside_the_operators_networks(unlisted_peer):
    for path in ("/health", "/metrics"):
        for forwarded in (None, "10.0.0.1"):  # a made-up header opens nothing
            response = _get(unlisted_peer.url, forwarded, path)
            assert response.status_code == 403, (path, forwarded)
            assert response.json() == {
                "error": {
                    "code": "forbidden",
                    "message": "This page answers only the operators' networks (OPS_ALLOW_NETWORKS).",
                }
            }
    assert _get(unlisted_peer.url, path="/health/live").json() == {"status": "alive"}
    assert _get(unlisted_peer.url, path="/health/ready").json() == {"status": "healthy"}


@pytest.fixture(scope="module")
def listed_peer(tmp_path_factory):
    """127.0.0.1 and ::1 are the proxies; counters in Redis, where the test reads their keys; on
    [::1] too where the machine has it."""
    require_redis()
    env = _env(tmp_path_factory.mktemp("listed"), TRUSTED_PROXIES="127.0.0.1,::1", REDIS_URL=REDIS_URL)
    server = Gunicorn(env, workers=1)
    if _ipv6_loopback():  # gunicorn.conf.py's bind is 0.0.0.0: this adds [::1] on the same port
        server.env["GUNICORN_CMD_ARGS"] = f"--bind 0.0.0.0:{server.port} --bind [::1]:{server.port}"
    with server:
        yield server


def test_a_listed_peers_forwarded_for_names_the_client(listed_peer):
    first = _get(listed_peer.url, "203.0.113.66, 198.51.100.1")  # the first entry: made up by the client
    other = _get(listed_peer.url, "203.0.113.66, 198.51.100.2")
    again = _get(listed_peer.url, "203.0.113.67, 198.51.100.1")
    remaining = [r.headers["X-RateLimit-Remaining"] for r in (first, other, again)]
    assert remaining == ["59", "59", "58"]
    logged = _logged_addresses(listed_peer, [first, other, again])
    assert logged == ["198.51.100.1", "198.51.100.2", "198.51.100.1"]


def test_an_ipv6_64_spends_one_budget(listed_peer):
    responses = [
        _get(listed_peer.url, forwarded)
        for forwarded in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1")
    ]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["59", "58", "59"]
    assert _logged_addresses(listed_peer, responses) == [
        "2001:db8:1:2::1",
        "2001:db8:1:2:ffff::9",
        "2001:db8:1:3::1",
    ]


def test_operators_behind_the_listed_proxy_are_known_by_their_forwarded_address(listed_peer):
    assert _get(listed_peer.url, "10.2.3.4", "/metrics").status_code == 200
    assert _get(listed_peer.url, "203.0.113.7", "/metrics").status_code == 403
    assert _get(listed_peer.url, "2001:db8::7", "/health").status_code == 403
    assert _get(listed_peer.url, None, "/health").status_code == 200  # the peer itself: loopback


def test_a_request_over_ipv6_loopback_is_keyed_on_its_64(listed_peer):
    if "GUNICORN_CMD_ARGS" not in listed_peer.env:
        pytest.skip("no IPv6 loopback here")
    response = requests.get(f"http://[::1]:{listed_peer.port}{PATH}", timeout=10)
    assert response.status_code == 200
    assert _logged_addresses(listed_peer, [response]) == ["::1"]
    redis = require_redis()
    namespace = listed_peer.env["CACHE_NAMESPACE"]
    keys = [key.decode() for key in redis.scan_iter(match=f"{namespace}:rl*")]
    assert any("/::/64/" in key for key in keys), keys
    assert not any("/::1/" in key for key in keys), keys
