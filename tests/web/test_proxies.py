"""TRUSTED_PROXIES as a list of networks: X-Forwarded-For only from a listed peer, the client its
rightmost address that is not a listed proxy (tests/web/test_proxies_gunicorn.py: the same, served)."""

from __future__ import annotations

import pytest
from flask import request

from appfactory import create_app
from tests.conftest import base_overrides


@pytest.fixture
def resolved(tmp_path):
    """What the app takes for the client, for a request from `peer` with X-Forwarded-For `forwarded`."""
    app = create_app(
        base_overrides(
            DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}", TRUSTED_PROXIES="10.0.0.0/8,192.168.1.5"
        )
    )

    @app.get("/whoami")
    def whoami():
        return {"remote_addr": request.remote_addr}

    def ask(peer: str, forwarded: str | None = None) -> str:
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        response = app.test_client().get("/whoami", headers=headers, environ_base={"REMOTE_ADDR": peer})
        return response.get_json()["remote_addr"]

    yield ask
    app.extensions["db"].dispose()


def test_forwarded_for_from_an_unlisted_peer_is_ignored(resolved):
    assert resolved("127.0.0.1", "198.51.100.7") == "127.0.0.1"
    assert resolved("192.168.1.6", "198.51.100.7") == "192.168.1.6"


def test_a_listed_peer_names_the_client(resolved):
    assert resolved("10.0.0.5", "198.51.100.7") == "198.51.100.7"
    assert resolved("192.168.1.5", "198.51.100.7") == "198.51.100.7"
    assert resolved("::ffff:10.0.0.5", "198.51.100.7") == "198.51.100.7"  # a dual-stack socket's peer
    assert resolved("10.0.0.5") == "10.0.0.5"


def test_the_client_is_the_rightmost_hop_that_is_not_a_listed_proxy(resolved):
    # The client made up the first entry; the proxies appended the last two.
    assert resolved("10.0.0.5", "203.0.113.1, 198.51.100.7, 10.2.3.4") == "198.51.100.7"
    assert resolved("10.0.0.5", "203.0.113.1,198.51.100.7") == "198.51.100.7"
    assert resolved("10.0.0.5", " 2001:db8::7 ") == "2001:db8::7"


def test_only_proxies_in_the_header_makes_the_farthest_the_client(resolved):
    assert resolved("10.0.0.5", "10.9.9.9, 10.2.3.4") == "10.9.9.9"


def test_an_entry_that_is_no_address_is_never_the_client(resolved):
    assert resolved("10.0.0.5", "evil\x1b[2J") == "10.0.0.5"
    assert resolved("10.0.0.5", "unknown, 10.2.3.4") == "10.2.3.4"
    assert resolved("10.0.0.5", "198.51.100.7:4711") == "10.0.0.5"
