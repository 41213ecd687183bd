"""The README's run command as a newcomer types it, and the production shape, under a real gunicorn."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import key_namespace, truncate
from tests.support.gunicorn import ROOT, Gunicorn
from tests.support.http import fresh
from tests.support.services import REDIS_URL, require_redis
from tests.support.windows import clear_of_minute_edge

pytestmark = pytest.mark.slow


def _defaults(tmp_path, **extra: str) -> dict[str, str]:
    """The README's run command: no WEB_CONCURRENCY, no REDIS_URL (the tests' own database file)."""
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", "REDIS_URL": "", **extra}


def test_the_defaults_run_one_worker_and_give_a_client_exactly_the_configured_limit(tmp_path):
    env = _defaults(tmp_path, RATE_LIMIT_PER_MINUTE="10", LOG_LEVEL="INFO")
    with Gunicorn(env, workers=None) as server:
        clear_of_minute_edge()
        answers = [fresh(server.url, "GET", "/api/v1/templates") for _ in range(12)]
        server.stop()
        log = server.log()
    assert [status for status, _, _ in answers] == [200] * 10 + [429] * 2
    remaining = [int(headers["X-RateLimit-Remaining"]) for _, headers, _ in answers]
    assert remaining == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]
    for _, headers, _ in answers:
        assert headers["X-RateLimit-Limit"] == "10"
        assert headers["RateLimit-Policy"] == '"default";q=10;w=60'
    assert "Rate limit of 10 requests per 60 s exceeded" in answers[-1][2]["error"]["message"]
    assert log.count("Booting worker") == 1
    assert "ratelimit 10 per 1 minute" in log and "ratelimit 60 per" not in log


def _writes_are_seen_by_every_read(url: str) -> None:
    status, _, ada = fresh(url, "POST", "/api/v1/users", {"email": "ada@example.com", "name": "Ada"})
    assert status == 201
    profile = f"/api/v1/users/{ada['id']}"
    warm = [fresh(url, "GET", profile) for _ in range(16)]  # fill every worker's view of it
    assert {answer[2]["name"] for answer in warm} == {"Ada"}
    assert [fresh(url, "GET", "/api/v1/templates")[2]["total"] for _ in range(16)] == [0] * 16

    key = ada["api_key"]
    assert fresh(url, "PATCH", profile, {"name": "Ada L."}, key=key)[0] == 200
    assert [fresh(url, "GET", profile)[2]["name"] for _ in range(16)] == ["Ada L."] * 16
    assert fresh(url, "POST", "/api/v1/templates", {"name": "t", "body": "b"}, key=key)[0] == 201
    assert [fresh(url, "GET", "/api/v1/templates")[2]["total"] for _ in range(16)] == [1] * 16
    assert fresh(url, "DELETE", profile, key=key)[0] == 204
    assert [fresh(url, "GET", profile)[0] for _ in range(16)] == [404] * 16
    # Ada's key went with her, on every worker (8 tries: a 11th refused key a minute would be a 429)
    assert [fresh(url, "GET", "/api/v1/templates", key=key)[0] for _ in range(8)] == [401] * 8

    status, _, bob = fresh(url, "POST", "/api/v1/users", {"email": "bob@example.com", "name": "Bob"})
    assert status == 201 and bob["id"] > ada["id"]
    assert [fresh(url, "GET", profile)[0] for _ in range(16)] == [404] * 16


def test_on_the_defaults_every_read_after_a_write_shows_it(tmp_path):
    with Gunicorn(_defaults(tmp_path, RATE_LIMIT_PER_MINUTE="100000"), workers=None) as server:
        _writes_are_seen_by_every_read(server.url)


def test_with_four_workers_on_postgresql_and_redis_every_read_after_a_write_shows_it(postgres):
    require_redis()
    env = {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": key_namespace(),
        "RATE_LIMIT_PER_MINUTE": "100000",
        "LOG_LEVEL": "WARNING",
    }
    try:
        with Gunicorn(env, workers=4) as server:
            _writes_are_seen_by_every_read(server.url)
    finally:
        truncate(postgres.url)  # the session's database is shared with later tests


BAD = {"DB_POOL_SIZE": "ten", "LOG_FORMAT": "xml"}


def _assert_names_both(output: str, returncode: int) -> None:
    assert returncode != 0
    assert "Traceback" not in output
    assert "DB_POOL_SIZE" in output and "LOG_FORMAT" in output


def test_two_bad_variables_are_both_named_by_gunicorn(tmp_path):
    server = Gunicorn(_defaults(tmp_path, **BAD), workers=None)
    try:
        with pytest.raises(RuntimeError):
            server.start(timeout=20)
        output = server.log()
    finally:
        server.close()
    lines = [json.loads(line) for line in output.splitlines()]
    assert [line["level"] for line in lines] == ["CRITICAL", "CRITICAL"]
    assert "DB_POOL_SIZE" in lines[0]["message"] and "LOG_FORMAT" in lines[1]["message"]
    _assert_names_both(output, server.process.returncode)


@pytest.mark.parametrize("command", [["cache", "stats"], ["db", "upgrade"], ["cache", "clear"]])
def test_two_bad_variables_are_both_named_by_the_flask_commands(tmp_path, command):
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", *command]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **_defaults(tmp_path, **BAD)}
    done = subprocess.run(flask, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    _assert_names_both(done.stdout + done.stderr, done.returncode)
    assert done.stderr.splitlines() == [
        "configuration error: DB_POOL_SIZE must be a whole number of at least 1, got 'ten'",
        "configuration error: LOG_FORMAT must be one of json, text, got 'xml'",
    ]
