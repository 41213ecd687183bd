"""Two instances of the service behind one load balancer share one Redis and one PostgreSQL: every
promise holds across them as within one. Then both through one PgBouncer in transaction pooling."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests

from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.http import fresh
from tests.support.services import REDIS_URL, PgBouncer, PostgresDatabase, require_redis
from tests.support.windows import clear_of_minute_edge

pytestmark = pytest.mark.slow


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": key_namespace(),
        "AI_ALLOW_ANONYMOUS": "false",
        "AI_LOCAL_LATENCY_MS": "0",
        "RATE_LIMIT_SIGNUPS_PER_MINUTE": "1000",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def _signup(url: str, name: str) -> tuple[int, str]:
    status, _, body = fresh(url, "POST", "/api/v1/users", {"email": f"{name}@example.com", "name": name})
    assert status == 201, body
    return body["id"], body["api_key"]


@pytest.fixture
def database():
    database = PostgresDatabase()  # not migrated: the instances do it as they start
    yield database
    database.drop()


def test_limits_cache_single_flight_and_revocation_hold_across_two_instances(database):
    require_redis()
    env = _env(
        database.url, RATE_LIMIT_PER_MINUTE="20", RATE_LIMIT_AI_PER_MINUTE="1000", AI_LOCAL_LATENCY_MS="700"
    )
    with Gunicorn(env, workers=2) as a, Gunicorn(env, workers=2) as b:
        both = [a.url, b.url]

        # A rate limit is exact across both: 20 requests alternating between them, then 429 on either.
        _, key = _signup(a.url, "limits")
        clear_of_minute_edge()
        statuses = [fresh(both[i % 2], "GET", "/api/v1/templates", key=key)[0] for i in range(22)]
        assert statuses == [200] * 20 + [429] * 2

        # A value cached through one is a HIT through the other.
        _, key = _signup(b.url, "cache")
        first = fresh(a.url, "GET", "/api/v1/ai/generate?prompt=shared", key=key)
        second = fresh(b.url, "GET", "/api/v1/ai/generate?prompt=shared", key=key)
        assert (first[1]["X-Cache"], second[1]["X-Cache"]) == ("MISS", "HIT")
        assert first[2]["text"] == second[2]["text"]

        # 50 concurrent identical uncached generations split over both: one upstream call.
        with ThreadPoolExecutor(50) as pool:
            answers = list(
                pool.map(
                    lambda i: fresh(both[i % 2], "GET", "/api/v1/ai/generate?prompt=flight", key=key),
                    range(50),
                )
            )
        assert [status for status, _, _ in answers] == [200] * 50
        outcomes = sorted(headers["X-Cache"] for _, headers, _ in answers)
        assert outcomes.count("MISS") == 1, outcomes  # the one computation; the other 49 waited for it
        assert len({body["generated_at"] for _, _, body in answers}) == 1

        # A key revoked through one (its user deleted there) is refused by the other at once.
        user_id, key = _signup(a.url, "revoked")
        assert fresh(b.url, "GET", "/api/v1/ai/generate?prompt=shared", key=key)[0] == 200  # b remembers it
        assert fresh(a.url, "DELETE", f"/api/v1/users/{user_id}", key=key)[0] == 204
        assert [fresh(b.url, "GET", "/api/v1/ai/generate?prompt=shared", key=key)[0] for _ in range(4)] == [
            401
        ] * 4


def _crud_across(a: str, b: str) -> None:
    user_id, key = _signup(a, "crud")
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
        env = _env(bouncer.url(database.url), GUNICORN_THREADS="4")
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
        _, key = _signup(a.url, "load")
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


class _closing:
    """Close a server (gunicorn, PgBouncer) when the block ends, started or not."""

    def __init__(self, server) -> None:
        self.server = server

    def __enter__(self):
        return self.server

    def __exit__(self, *exc) -> None:
        self.server.close()
