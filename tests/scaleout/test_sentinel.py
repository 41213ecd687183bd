"""Redis Sentinel: two instances on `redis+sentinel://` keep every promise across them, and a failover
during a load costs no 5xx: the cache and the limits serve without Redis until the replica is promoted,
then use it."""

from __future__ import annotations

import time

import pytest
import redis

from appfactory import create_app
from appfactory.db import migrate
from tests.conftest import base_overrides
from tests.scaleout.promises import cli_works, hold_across, instance_env, signup
from tests.support.gunicorn import Gunicorn
from tests.support.http import fresh
from tests.support.keys import bearer
from tests.support.load import Load, classes
from tests.support.services import RedisSentinel, RedisServer, free_port

pytestmark = pytest.mark.slow


def _wait(condition, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(what)
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def sentinel():
    primary = RedisServer("--repl-diskless-sync-delay", "0").start()  # a replica syncs at once
    replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port)).start()
    watcher = RedisSentinel(primary).start()
    try:
        _wait(lambda: _replication(replica).get("master_link_status") == "up", 15, "the replica never synced")
        yield primary, replica, watcher
    finally:
        for server in (watcher, replica, primary):
            server.close()


def _replication(server: RedisServer) -> dict:
    with redis.Redis(port=server.port, socket_timeout=1) as client:
        return client.info("replication")


def test_two_instances_on_sentinel_and_a_failover_under_load(sentinel, database, capsys):
    primary, replica, watcher = sentinel
    env = instance_env(database.url, watcher.url, REDIS_RETRY_AFTER_S="0.5")
    with Gunicorn(env, workers=2) as a, Gunicorn(env, workers=2) as b:
        hold_across(a.url, b.url)
        cli_works(env, b.url)
        assert fresh(a.url, "GET", "/health")[2]["redis"] == "connected"

        # A key per instance's load, on the generation budget (RATE_LIMIT_AI_PER_MINUTE, 1,000): the
        # load measures failures, not limits.
        loads = [
            Load(
                server.url,
                0,
                clients=3,
                pause_s=0.02,
                headers=bearer(signup(server.url, f"load{n}")[1]),
                mix=_MIX,
            )
            for n, server in enumerate((a, b))
        ]
        _, key = signup(a.url, "after")
        for load in loads:
            load.__enter__()
        try:
            time.sleep(1.5)
            primary.stop()  # the primary is gone: the sentinel notices, then promotes the replica
            without_primary = _wait(lambda: watcher.primary_port() == replica.port, 30, "no failover")
            time.sleep(3)  # and the instances find the new primary
        finally:
            for load in loads:
                load.__exit__(None, None, None)
        answers = [answer for load in loads for answer in load.run.answers]
        counts = classes(answers)

        # After the failover the instances use the promoted replica: cached across them again.
        first = fresh(a.url, "GET", "/api/v1/ai/generate?prompt=after", key=key)
        second = fresh(b.url, "GET", "/api/v1/ai/generate?prompt=after", key=key)
        assert (first[1]["X-Cache"], second[1]["X-Cache"]) == ("MISS", "HIT")
    with capsys.disabled():
        print(
            f"\nSentinel failover under load: {len(answers)} requests, {counts}; "
            f"no primary for {without_primary:.1f} s (down-after 1 s)"
        )
    assert counts.get("5xx", 0) == 0 and counts.get("none", 0) == 0, counts
    assert counts.get("2xx", 0) == len(answers)


_MIX = [  # the cache and the limiter on Redis, the key's revocation version too
    ("GET", "/api/v1/ai/generate?prompt=load-hit", None),
    ("POST", "/api/v1/ai/generate", {"prompt": "load-post"}),
]


def test_a_sentinel_that_does_not_answer_is_passed_over(sentinel, tmp_path):
    primary, _, watcher = sentinel
    gone = free_port()  # the first sentinel listed is down: the client asks the next one
    app = create_app(
        base_overrides(
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
            REDIS_URL=f"redis+sentinel://127.0.0.1:{gone},127.0.0.1:{watcher.port}/{watcher.name}",
        )
    )
    migrate.upgrade(app.config["DATABASE_URL"])
    client = app.test_client()
    assert client.get("/health").get_json()["redis"] == "connected"
    answers = [client.get("/api/v1/ai/generate?prompt=passed-over").headers["X-Cache"] for _ in range(2)]
    assert answers == ["MISS", "HIT"]
    with redis.Redis(port=primary.port, socket_timeout=1) as direct:  # found through the live sentinel
        assert direct.dbsize() > 0
