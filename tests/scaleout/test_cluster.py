"""Redis Cluster: two instances on `redis+cluster://` keep every promise across them, with their keys
spread over the cluster's nodes, and a write's invalidation reaches entries on every node."""

from __future__ import annotations

import pytest

from tests.scaleout.promises import cli_works, hold_across, instance_env, signup
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
    counts = cluster.key_counts()
    assert sum(count > 0 for count in counts) >= 2, counts  # the keys really are spread over nodes
