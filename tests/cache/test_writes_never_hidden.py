"""A write is never hidden by an entry computed before it: not by a read racing the write, not after
Redis missed the write's invalidation (docs/cache.md#writes-are-never-hidden)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from blueprints.templates import store as template_store
from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.keys import bearer
from tests.support.services import REDIS_URL, RedisServer, require_redis

LIST = "/api/v1/templates"


def _names(response) -> list[str]:
    return [item["name"] for item in response.get_json()["items"]]


def test_a_read_racing_a_write_never_stores_what_the_write_changed(new_app, monkeypatch):
    """A miss reads the list, is held before it stores it while a delete commits and invalidates,
    then stores: the next read shows the delete."""
    require_redis().close()
    app = new_app(REDIS_URL=REDIS_URL)
    client = app.test_client()
    user = client.post("/api/v1/users", json={"email": "ada@example.com", "name": "Ada"}).get_json()
    key = {"Authorization": f"Bearer {user['api_key']}"}
    made = client.post(LIST, json={"name": "doomed", "body": "b"}, headers=key).get_json()

    read_done, write_done = threading.Event(), threading.Event()
    reading = template_store.list_page

    def held_list_page(limit: int, offset: int) -> dict:
        page = reading(limit, offset)  # the database read, before the write
        if threading.current_thread().name == "racing-read":
            read_done.set()
            assert write_done.wait(10)  # the write commits and invalidates meanwhile
        return page

    monkeypatch.setattr(template_store, "list_page", held_list_page)
    raced: list = []
    racer = threading.Thread(
        target=lambda: raced.append(app.test_client().get(LIST, headers=key)), name="racing-read"
    )
    racer.start()
    assert read_done.wait(10)
    assert client.delete(f"{LIST}/{made['id']}", headers=key).status_code == 204
    write_done.set()
    racer.join(10)
    assert _names(raced[0]) == ["doomed"]  # it read before the delete: that answer is fine
    after = client.get(LIST, headers=key)
    assert _names(after) == [], after.headers.get("Cache-Status")
    assert after.headers["X-Cache"] == "MISS"  # the racing read's entry was not taken


@pytest.mark.slow
def test_writes_while_redis_is_frozen_are_seen_by_every_worker_after_the_back_off(postgres):
    redis_server = RedisServer().start()
    env = {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis_server.url,
        "CACHE_NAMESPACE": key_namespace(),
        "REDIS_RETRY_AFTER_S": "1",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "LOG_LEVEL": "WARNING",
    }
    try:
        with Gunicorn(env, workers=3) as server, requests.Session() as session:
            user = session.post(
                f"{server.url}/api/v1/users", json={"email": "frozen@example.com", "name": "Before"}
            ).json()
            user_id, key = user["id"], user["api_key"]
            created = session.post(
                f"{server.url}{LIST}", json={"name": "before", "body": "b"}, headers=bearer(key)
            ).json()
            profile = f"{server.url}/api/v1/users/{user_id}"

            def read_both() -> tuple[list[str], str, str, str]:
                listed = session.get(f"{server.url}{LIST}", headers=bearer(key))
                shown = session.get(profile, headers=bearer(key))
                names = [item["name"] for item in listed.json()["items"]]
                return names, shown.json()["name"], listed.headers["X-Cache"], shown.headers["X-Cache"]

            # Every worker has read both, and both entries are in the cache.
            seen = [read_both() for _ in range(20)]
            assert {(s[2], s[3]) for s in seen[-5:]} == {("HIT", "HIT")}

            redis_server.freeze()
            renamed = session.patch(
                f"{server.url}{LIST}/{created['id']}", json={"name": "after"}, headers=bearer(key)
            )
            changed = session.patch(profile, json={"name": "Changed"}, headers=bearer(key))
            assert renamed.status_code == changed.status_code == 200
            time.sleep(0.5)
            redis_server.thaw()

            time.sleep(2.5)  # the breaker's back-off (1 s), and the writer's retry after it
            after = [read_both() for _ in range(30)]
            log = server.log()
    finally:
        redis_server.close()
    assert {(names[0], name) for names, name, _, _ in after} == {("after", "Changed")}, after
    assert "announced after Redis came back" in log
