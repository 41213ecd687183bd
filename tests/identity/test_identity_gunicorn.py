"""API keys under a real gunicorn with several workers, on the machine's PostgreSQL and Redis."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import key_namespace, truncate
from tests.support.gunicorn import ROOT, Gunicorn
from tests.support.http import fresh
from tests.support.services import REDIS_URL, require_redis
from tests.support.windows import clear_of_minute_edge

pytestmark = pytest.mark.slow

GENERATE = "/api/v1/ai/generate?prompt="


@pytest.fixture
def env(postgres):
    require_redis()
    yield {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": key_namespace(),
        "RATE_LIMIT_PER_MINUTE": "100000",
        "LOG_LEVEL": "INFO",
        "AI_ALLOW_ANONYMOUS": "false",
        "AI_LOCAL_LATENCY_MS": "0",
    }
    truncate(postgres.url)


def _user(url: str, email: str) -> tuple[int, str]:
    status, _, body = fresh(url, "POST", "/api/v1/users", {"email": email, "name": email.split("@")[0]})
    assert status == 201
    return body["id"], body["api_key"]


def _flask(env: dict, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    environ = {**os.environ, **env, "LOG_LEVEL": "WARNING"}
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


def test_a_revoked_key_is_refused_on_the_next_request_by_every_worker(env):
    with Gunicorn(env, workers=3) as server:
        _, key = _user(server.url, "ada@example.com")
        # Every worker verifies the key, then remembers it (fresh connections land on any worker).
        warm = [fresh(server.url, "GET", GENERATE + "warm", key=key) for _ in range(30)]
        assert [status for status, _, _ in warm] == [200] * 30
        assert {headers["X-Cache"] for _, headers, _ in warm[3:]} == {"HIT"}
        key_id = key.split("_")[1]
        revoked = _flask(env, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        after = [fresh(server.url, "GET", GENERATE + "warm", key=key)[0] for _ in range(9)]
        assert after == [401] * 9
        server.stop()
        log = server.log()
    assert key not in log and key.split("_", 2)[2] not in log  # no key in any log line
    assert log.count('"path":"/api/v1/ai/generate"') >= 39 and "api_key" not in log


def test_b_never_sees_as_email_across_workers_warm_or_cold(env):
    with Gunicorn(env, workers=3) as server:
        a_id, a_key = _user(server.url, "ada@example.com")
        _, b_key = _user(server.url, "bob@example.com")
        admin = _flask(env, "keys", "create", "--user", str(a_id), "--admin")
        assert admin.returncode == 0, admin.stderr
        admin_key = admin.stdout.strip()
        profile = f"/api/v1/users/{a_id}"
        viewers = [(None, False), (b_key, False), (a_key, True), (admin_key, True)]
        for round_ in range(3):
            if round_ == 1:  # cold again: a write drops the cached profile
                assert fresh(server.url, "PATCH", profile, {"name": "Ada L."}, key=a_key)[0] == 200
            for key, sees in viewers * 3:
                status, headers, body = fresh(server.url, "GET", profile, key=key)
                assert status == 200
                assert ("email" in body) == sees, (round_, key == b_key)
                assert (headers.get("Cache-Control") == "no-store") == (key is not None)
        assert fresh(server.url, "PATCH", profile, {"name": "x"}, key=b_key)[0] == 403
        assert fresh(server.url, "DELETE", profile, key=b_key)[0] == 403
        assert fresh(server.url, "DELETE", profile)[0] == 401


def test_keys_have_their_own_budgets_and_wrong_keys_end_in_429(env):
    env = {**env, "RATE_LIMIT_PER_MINUTE": "20"}
    with Gunicorn(env, workers=3) as server:
        clear_of_minute_edge()
        keys = [_user(server.url, f"u{n}@example.com")[1] for n in range(2)]  # 2 of the address's 20
        for key in keys:
            statuses = [fresh(server.url, "GET", "/api/v1/templates", key=key)[0] for _ in range(21)]
            assert statuses == [200] * 20 + [429]
        wrong = [
            fresh(server.url, "GET", "/api/v1/templates", key=f"aig_{n}_{'z' * 43}") for n in range(1, 61)
        ]
        statuses = [status for status, _, _ in wrong]
        assert statuses == [401] * 10 + [429] * 50  # the failures' own budget, not the address's 18 left
        assert "failed authentications" in wrong[10][2]["error"]["message"]
        assert all(headers["WWW-Authenticate"].startswith("Bearer") for _, headers, _ in wrong[:10])
        assert 1 <= int(wrong[-1][1]["Retry-After"]) <= 60


def test_anonymous_generation_is_401_by_default_and_200_when_opted_in(env):
    for allowed, status in (("", 401), ("true", 200)):
        with Gunicorn({**env, "AI_ALLOW_ANONYMOUS": allowed}, workers=2) as server:
            answers = [fresh(server.url, "GET", GENERATE + "anonymous")[0] for _ in range(4)]
            assert answers == [status] * 4


def test_sign_ups_are_bounded_per_address_and_in_total_across_workers(env):
    env = {**env, "RATE_LIMIT_SIGNUPS_PER_HOUR": "4", "SIGNUPS_PER_DAY": "6", "TRUSTED_PROXIES": "1"}
    with Gunicorn(env, workers=3) as server:
        clear_of_minute_edge()

        def sign_up(n: int, address: str) -> tuple[int, dict, dict]:
            body = {"email": f"u{n}@example.com", "name": "U"}
            return fresh(server.url, "POST", "/api/v1/users", body, headers={"X-Forwarded-For": address})

        first = [sign_up(n, "203.0.113.1") for n in range(5)]  # fresh connections: any worker answers
        assert [status for status, _, _ in first] == [201] * 4 + [429]
        assert first[-1][1]["RateLimit-Policy"] == '"signup-hour";q=4;w=3600'
        second = [sign_up(n, "203.0.113.2") for n in range(5, 8)]
        assert [status for status, _, _ in second] == [201, 201, 429]  # the service's 6 a day
        assert second[-1][1]["RateLimit-Policy"] == '"signup-total";q=6;w=86400'
