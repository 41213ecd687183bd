"""Two instances of the service behind one load balancer share one Redis and one PostgreSQL: every
promise holds across them as within one. Then both through one PgBouncer in transaction pooling."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests

from tests.scaleout.promises import hold_across, instance_env, signup
from tests.support.gunicorn import ROOT, Gunicorn
from tests.support.http import fresh
from tests.support.services import (
    REDIS_URL,
    PgBouncer,
    PostgresDatabase,
    require_pgbouncer,
    require_redis,
)

pytestmark = pytest.mark.slow


def test_limits_cache_single_flight_and_revocation_hold_across_two_instances(database):
    require_redis()
    env = instance_env(database.url, REDIS_URL)
    with Gunicorn(env, workers=2) as a, Gunicorn(env, workers=2) as b:
        hold_across(a.url, b.url)


def _crud_across(a: str, b: str) -> None:
    user_id, key = signup(a, "crud")
    status, headers, created = fresh(
        a, "POST", "/api/v1/templates", {"name": "t", "body": "Hi {{who}}"}, key=key
    )
    assert status == 201
    path = f"/api/v1/templates/{created['id']}"
    assert fresh(b, "GET", path)[2]["body"] == "Hi {{who}}"
    assert fresh(b, "PATCH", path, {"body": "Hello {{who}}"}, key=key)[0] == 200
    assert fresh(a, "GET", "/api/v1/templates")[2]["items"][0]["body"] == "Hello {{who}}"  # fresh across
    rendered = fresh(a, "POST", f"{path}/render", {"variables": {"who": "Ada"}})
    assert rendered[2]["text"] == "Hello Ada"
    assert fresh(b, "PATCH", f"/api/v1/users/{user_id}", {"name": "Ada"}, key=key)[2]["name"] == "Ada"
    assert fresh(a, "DELETE", path, key=key)[0] == 204
    assert fresh(b, "GET", path)[0] == 404


def _peak_connections(database: PostgresDatabase, urls: list[str], path: str) -> tuple[int, int]:
    """200 concurrent clients, each sending 10 requests over keep-alive, alternating between the
    instances; PostgreSQL's sessions on the database sampled every 50 ms. (peak, non-2xx answers)."""
    peak, failures, done = 0, 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, database.connections(application_name=None))
            time.sleep(0.05)

    def client(i: int) -> int:
        with requests.Session() as session:
            return sum(
                session.get(urls[(i + n) % 2] + path, timeout=30).status_code != 200 for n in range(10)
            )

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(200) as pool:
            failures = sum(pool.map(client, range(200)))
    finally:
        done.set()
        sampler.join()
    return peak, failures


def test_both_instances_through_pgbouncer_in_transaction_pooling(database, capsys):
    require_redis()
    with ExitStack() as stack:
        bouncer = stack.enter_context(_closing(PgBouncer(pool_size=4).start()))
        env = instance_env(bouncer.url(database.url), REDIS_URL, RATE_LIMIT_PER_MINUTE="100000")
        # Both start at once, each migrating through PgBouncer: the migration's lock must hold there.
        a, b = Gunicorn(env, workers=3), Gunicorn(env, workers=3)
        stack.enter_context(_closing(a))
        stack.enter_context(_closing(b))
        starting = [threading.Thread(target=server.start) for server in (a, b)]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        for server in (a, b):
            assert fresh(server.url, "GET", "/health")[2]["schema"] == "current"
        _crud_across(a.url, b.url)
        _, key = signup(a.url, "load")
        template = fresh(a.url, "POST", "/api/v1/templates", {"name": "load", "body": "x"}, key=key)[2]
        path = f"/api/v1/templates/{template['id']}"  # read from the database on every request
        through_bouncer, failed = _peak_connections(database, [a.url, b.url], path)
        assert failed == 0
        assert through_bouncer <= bouncer.pool_size, through_bouncer

        # The same load straight to PostgreSQL, for the comparison the README makes.
        direct = {**env, "DATABASE_URL": database.url}
        c = stack.enter_context(_closing(Gunicorn(direct, workers=3).start()))
        d = stack.enter_context(_closing(Gunicorn(direct, workers=3).start()))
        a.stop(), b.stop()
        without_bouncer, failed = _peak_connections(database, [c.url, d.url], path)
        assert failed == 0
    with capsys.disabled():
        print(
            f"\nPostgreSQL sessions under 200 clients on 2 instances × 3 workers: {through_bouncer} through "
            f"PgBouncer (pool {bouncer.pool_size}), {without_bouncer} without"
        )
    assert without_bouncer > through_bouncer


def test_the_crud_tests_pass_through_pgbouncer(tmp_path, capsys):
    """The templates, users and keys tests on PostgreSQL, reached through PgBouncer in transaction
    pooling (tests/conftest.py `postgres`), in a pytest run of their own."""
    require_pgbouncer()  # without it the inner run would only skip
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'run'}",  # its own: this session's temporary folder stays this one's
            "-k",
            "postgresql",
            "tests/blueprints/test_templates.py",
            "tests/blueprints/test_users.py",
            "tests/identity/test_keys.py",
        ],
        cwd=ROOT,
        env={**os.environ, "AIGEN_TEST_THROUGH_PGBOUNCER": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    passed = re.search(r"(\d+) passed", run.stdout)
    with capsys.disabled():
        print(f"\nCRUD tests through PgBouncer (transaction pooling): {passed.group(0) if passed else '?'}")
    assert run.returncode == 0, run.stdout[-6000:]
    assert passed and int(passed.group(1)) >= 50


class _closing:
    """Close a server (gunicorn, PgBouncer) when the block ends, started or not."""

    def __init__(self, server) -> None:
        self.server = server

    def __enter__(self):
        return self.server

    def __exit__(self, *exc) -> None:
        self.server.close()
