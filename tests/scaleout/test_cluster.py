"""Redis Cluster: two instances on `redis+cluster://` keep every promise across them, with their keys
spread over the cluster's nodes, and a write's invalidation reaches entries on every node; a primary
lost under load costs no 5xx while its replica takes over."""

from __future__ import annotations

import re

import pytest

from tests.scaleout.promises import (
    cli_works,
    failover_under_load,
    flask_command,
    hold_across,
    instance_env,
    signup,
    wait_until,
)
from tests.support.gunicorn import Gunicorn
from tests.support.http import fresh
from tests.support.services import RedisClusterNodes

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    nodes = RedisClusterNodes(3).start()
    yield nodes
    nodes.close()


def test_two_instances_on_a_three_node_cluster(cluster, database):
    env = instance_env(database.url, cluster.url)
    with Gunicorn(env, workers=2) as a, Gunicorn(env, workers=2) as b:
        assert fresh(a.url, "GET", "/health")[2]["redis"] == "connected"
        hold_across(a.url, b.url)
        cli_works(env, b.url)

        # Cached pages of the templates list through b, a write through a: every page is dropped,
        # whichever node holds it.
        _, key = signup(a.url, "writer")
        assert fresh(a.url, "POST", "/api/v1/templates", {"name": "one", "body": "x"}, key=key)[0] == 201
        pages = [f"/api/v1/templates?limit={limit}" for limit in range(1, 6)]  # 15 reads: in budget
        for page in pages:
            assert fresh(b.url, "GET", page)[2]["total"] == 1
            assert fresh(b.url, "GET", page)[1]["X-Cache"] == "HIT"
        assert fresh(a.url, "POST", "/api/v1/templates", {"name": "two", "body": "y"}, key=key)[0] == 201
        for page in pages:
            status, headers, body = fresh(b.url, "GET", page)
            assert (status, headers["X-Cache"], body["total"]) == (200, "MISS", 2), page

        # `flask cache clear` scans every primary behind its progress bar: the pages are gone.
        cleared = flask_command(env, "cache", "clear")
        assert "scanning Redis" in cleared and re.search(r"deleted [1-9]\d* entries", cleared), cleared
        assert fresh(b.url, "GET", pages[0])[1]["X-Cache"] == "MISS"
    counts = cluster.key_counts()
    assert sum(count > 0 for count in counts) >= 2, counts  # the keys really are spread over nodes


def test_a_primary_lost_under_load_costs_no_5xx(database, capsys):
    nodes = RedisClusterNodes(3, replicas=1, node_timeout_ms=1000)
    try:
        nodes.start()
        wait_until(
            lambda: "slave-syncing" not in map(nodes.role, nodes.nodes), 15, "the replicas never synced"
        )
        env = instance_env(database.url, nodes.url, REDIS_RETRY_AFTER_S="0.5")
        with Gunicorn(env, workers=2) as a, Gunicorn(env, workers=2) as b:
            assert fresh(a.url, "GET", "/health")[2]["redis"] == "connected"

            def lose_primary() -> float:
                victim = next(node for node in nodes.nodes if nodes.role(node) == "master")
                heir = nodes.replica_of(victim)
                others = [node for node in nodes.nodes if node is not victim]
                victim.stop()  # the others judge it down after the node timeout; its replica takes over
                return wait_until(
                    lambda: nodes.role(heir) == "master" and nodes.healthy(others), 30, "no replica took over"
                )

            counts, without_primary = failover_under_load(a.url, b.url, lose_primary)
    finally:
        nodes.close()
    with capsys.disabled():
        print(
            f"\nCluster failover under load: {sum(counts.values())} requests, {counts}; "
            f"slots without a primary for {without_primary:.1f} s (node timeout 1 s)"
        )
    assert set(counts) == {"2xx"}, counts  # no 5xx, no dropped connection
