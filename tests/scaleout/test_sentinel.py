"""Redis Sentinel: two instances on `redis+sentinel://` keep every promise across them, and a failover
during a load costs no 5xx: the cache and the limits serve without Redis until the replica is promoted,
then use it."""

from __future__ import annotations

import socket
import threading

import pytest
import redis

from appfactory import create_app
from appfactory.db import migrate
from tests.conftest import base_overrides
from tests.scaleout.promises import cli_works, failover_under_load, hold_across, instance_env, wait_until
from tests.support.gunicorn import Gunicorn
from tests.support.http import fresh
from tests.support.services import RedisSentinel, RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinel():
    primary = RedisServer("--repl-diskless-sync-delay", "0").start()  # a replica syncs at once
    replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port)).start()
    watcher = RedisSentinel(primary).start()
    try:
        wait_until(
            lambda: _replication(replica).get("master_link_status") == "up", 15, "the replica never synced"
        )
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

        def lose_primary() -> float:
            primary.stop()  # the sentinel notices, then promotes the replica
            return wait_until(lambda: watcher.primary_port() == replica.port, 30, "no failover")

        counts, without_primary = failover_under_load(a.url, b.url, lose_primary)
    with capsys.disabled():
        print(
            f"\nSentinel failover under load: {sum(counts.values())} requests, {counts}; "
            f"no primary for {without_primary:.1f} s (down-after 1 s)"
        )
    assert set(counts) == {"2xx"}, counts  # no 5xx, no dropped connection


class _HangingUp:
    """A port that accepts connections and closes them at once, counting them: a sentinel gone bad."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.attempts = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.attempts += 1
            connection.close()

    def close(self) -> None:
        self.listener.close()


def test_a_sentinel_that_does_not_answer_is_passed_over_at_once(sentinel, tmp_path):
    primary, _, watcher = sentinel
    gone = _HangingUp()  # listed first: asked once per discovery, never again with a backoff
    app = create_app(
        base_overrides(
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
            REDIS_URL=f"redis+sentinel://127.0.0.1:{gone.port},127.0.0.1:{watcher.port}/{watcher.name}",
        )
    )
    migrate.upgrade(app.config["DATABASE_URL"])
    client = app.test_client()
    try:
        assert client.get("/health").get_json()["redis"] == "connected"
        answers = [client.get("/api/v1/ai/generate?prompt=passed-over").headers["X-Cache"] for _ in range(2)]
    finally:
        gone.close()
    assert answers == ["MISS", "HIT"]
    assert gone.attempts == 1  # one connection, one discovery: redis-py's default would retry it
    with redis.Redis(port=primary.port, socket_timeout=1) as direct:  # found through the live sentinel
        assert direct.dbsize() > 0
