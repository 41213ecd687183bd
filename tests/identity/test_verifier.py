"""What verifying keys costs and how long a worker's memory may trust one: no database lookup for an
address past its failures budget, and no remembered key accepted past its expiry."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from appfactory import create_app
from appfactory.db.models import utcnow
from tests.conftest import base_overrides
from tests.support.keys import bearer, issue_key
from tests.support.services import REDIS_URL, require_redis
from tests.support.statements import statements
from tests.support.windows import clear_of_minute_edge

TEMPLATES = "/api/v1/templates"  # reads need no key, but a presented one is verified


@pytest.fixture
def make_app(database_url):
    """Apps on SQLite and PostgreSQL, counting limits in memory or in the machine's Redis."""
    apps = []

    def make(storage: str = "memory", **overrides):
        redis_url = None
        if storage == "redis":
            require_redis().close()
            redis_url = REDIS_URL
        app = create_app(base_overrides(DATABASE_URL=database_url, REDIS_URL=redis_url, **overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["db"].dispose()
        if (state := app.extensions["redis"]) is not None:
            app.extensions["response_cache"].counters.flush()
            state.client.close()


def _wrong_key(n: int) -> dict[str, str]:
    return bearer(f"aig_{n}_{'y' * 43}")


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_an_address_past_its_failures_budget_costs_the_database_nothing(make_app, storage):
    clear_of_minute_edge()  # exact counts: not across a window's edge
    app = make_app(storage)  # AUTH_FAILURES_PER_MINUTE: the default, 10
    client, engine = app.test_client(), app.extensions["db"]
    with statements(engine, "api_keys") as within:
        first = [client.get(TEMPLATES, headers=_wrong_key(n)).status_code for n in range(1, 11)]
    with statements(engine, "api_keys") as past:
        rest = [client.get(TEMPLATES, headers=_wrong_key(n)) for n in range(11, 311)]
    assert first == [401] * 10 and len(within) == 10  # one lookup each
    assert [answer.status_code for answer in rest] == [429] * 300
    assert past == []  # refused before the lookup
    assert 1 <= int(rest[-1].headers["Retry-After"]) <= 60
    assert "failed authentications" in rest[-1].get_json()["error"]["message"]


def test_a_remembered_key_is_refused_as_soon_as_it_expires(make_app):
    app = make_app("redis")  # a worker remembers keys only with Redis (docs/identity.md)
    expires_at = utcnow() + timedelta(seconds=3)
    key = bearer(issue_key(app.config["DATABASE_URL"], admin=False, expires_at=expires_at))
    client, engine = app.test_client(), app.extensions["db"]
    assert [client.get(TEMPLATES, headers=key).status_code for _ in range(2)] == [200, 200]
    with statements(engine, "api_keys") as lookups:
        assert client.get(TEMPLATES, headers=key).status_code == 200
    assert lookups == []  # remembered: accepted from this worker's memory
    time.sleep(max(0.0, (expires_at - utcnow()).total_seconds()) + 0.1)
    refused = client.get(TEMPLATES, headers=key)
    assert refused.status_code == 401  # well within the memory's 60 s
    assert refused.get_json()["error"]["code"] == "unauthorized"
