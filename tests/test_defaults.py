"""Correct on every accepted configuration: no stale or deleted data, ids never reused, all errors at once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from appfactory import config, create_app
from appfactory.db import migrate
from tests.conftest import as_admin, base_overrides
from tests.support.services import REDIS_URL, require_redis

PROFILE_KEYS = {"id", "email", "name", "created_at", "updated_at"}


def test_every_bad_variable_is_named_at_once():
    with pytest.raises(config.ConfigError) as excinfo:
        config.load({"DB_POOL_SIZE": "ten", "LOG_FORMAT": "xml", "PORT": "0"})
    lines = excinfo.value.lines()
    assert len(lines) == 3
    assert all(line.startswith("configuration error: ") for line in lines)
    for name, line in zip(("DB_POOL_SIZE", "LOG_FORMAT", "PORT"), lines, strict=True):
        assert name in line


def test_one_worker_by_default_without_redis_and_several_with_it():
    assert config.load({})["WEB_CONCURRENCY"] == 1
    assert config.load({"REDIS_URL": REDIS_URL})["WEB_CONCURRENCY"] == config.SHARED_WORKERS
    assert config.load({"REDIS_URL": REDIS_URL, "WEB_CONCURRENCY": "3"})["WEB_CONCURRENCY"] == 3
    assert config.load({"WEB_CONCURRENCY": "1"})["WEB_CONCURRENCY"] == 1


def test_several_workers_without_redis_are_refused_naming_redis_url():
    with pytest.raises(config.ConfigError) as excinfo:
        config.load({"WEB_CONCURRENCY": "4"})
    [line] = excinfo.value.lines()
    assert "WEB_CONCURRENCY=4" in line and "REDIS_URL" in line


def test_bounds_are_written_as_people_write_numbers(client):
    response = client.get("/api/v1/templates?offset=-1")
    assert response.status_code == 422
    assert response.get_json()["error"]["message"] == "offset: Input should be greater than or equal to 0"
    response = client.get("/api/v1/ai/generate?prompt=x&temperature=2.5")
    assert response.get_json()["error"]["message"] == "temperature: Input should be less than or equal to 2"
    assert config.readable(0.5) == "0.5" and config.readable(2.0) == "2"


@pytest.mark.parametrize(
    "body, kind",
    [("[1, 2]", "an array"), ('"text"', "a single value"), ("3", "a single value"), (" null ", "null")],
)
def test_a_body_that_is_not_an_object_blames_no_field(client, body, kind):
    response = client.post("/api/v1/users", data=body, content_type="application/json")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "field" not in error
    assert error["message"] == f"The request body must be a JSON object, not {kind}."


def _instances(database_url: str, redis_url: str | None, count: int = 2) -> list:
    """`count` apps on one database, as separate processes or instances would be."""
    shared = base_overrides(DATABASE_URL=database_url, REDIS_URL=redis_url)
    return [create_app(shared) for _ in range(count)]


def _close(apps: list) -> None:
    for app in apps:
        app.extensions["db"].dispose()
        if (state := app.extensions["redis"]) is not None:
            app.extensions["response_cache"].counters.flush()
            state.client.close()


@pytest.mark.parametrize("shared_cache", [False, True], ids=["no-redis", "redis"])
def test_a_write_through_one_instance_is_seen_by_every_other(database_url, shared_cache):
    if shared_cache:
        require_redis()
    apps = _instances(database_url, REDIS_URL if shared_cache else None)
    try:
        writer, reader = as_admin(apps[0]), apps[1].test_client()
        user = writer.post("/api/v1/users", json={"email": "ada@example.com", "name": "Ada"}).get_json()
        profile = f"/api/v1/users/{user['id']}"
        assert reader.get(profile).get_json()["name"] == "Ada"
        assert reader.get(profile).get_json()["name"] == "Ada"  # cached, where a cache may hold it
        assert reader.get("/api/v1/templates").get_json()["total"] == 0

        assert writer.patch(profile, json={"name": "Ada L."}).status_code == 200
        assert reader.get(profile).get_json()["name"] == "Ada L."
        assert writer.post("/api/v1/templates", json={"name": "t", "body": "b"}).status_code == 201
        assert reader.get("/api/v1/templates").get_json()["total"] == 1
        assert writer.delete(profile).status_code == 204
        assert reader.get(profile).status_code == 404
        newcomer = writer.post("/api/v1/users", json={"email": "bob@example.com", "name": "Bob"}).get_json()
        assert newcomer["id"] > user["id"]
        assert reader.get(profile).status_code == 404
    finally:
        _close(apps)


def test_without_redis_profiles_and_lists_are_never_cached_but_answers_are(client):
    user = client.post("/api/v1/users", json={"email": "ada@example.com", "name": "Ada"}).get_json()
    for path in (f"/api/v1/users/{user['id']}", "/api/v1/templates"):
        responses = [client.get(path) for _ in range(2)]
        assert [r.status_code for r in responses] == [200, 200]
        assert all("X-Cache" not in r.headers for r in responses)
    answers = [client.get("/api/v1/ai/generate?prompt=tea").headers["X-Cache"] for _ in range(2)]
    assert answers == ["MISS", "HIT"]  # what no write changes is still cached in the process


@pytest.mark.parametrize(
    "resource, body",
    [
        ("users", lambda n: {"email": f"u{n}@example.com", "name": "U"}),
        ("templates", lambda n: {"name": f"t{n}", "body": "b"}),
    ],
)
def test_ids_are_never_reused_after_deleting_the_newest(client, resource, body):
    first = client.post(f"/api/v1/{resource}", json=body(1)).get_json()["id"]
    second = client.post(f"/api/v1/{resource}", json=body(2)).get_json()["id"]
    assert client.delete(f"/api/v1/{resource}/{second}").status_code == 204
    third = client.post(f"/api/v1/{resource}", json=body(3)).get_json()["id"]
    assert first < second < third


def test_an_existing_sqlite_database_upgrades_in_place_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, revision="0001")
    engine = create_engine(url)
    stamp = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        for n in (1, 2):
            conn.execute(
                text("INSERT INTO users (email, name, created_at, updated_at) VALUES (:e, 'U', :t, :t)"),
                {"e": f"u{n}@example.com", "t": stamp},
            )
        conn.execute(
            text(
                "INSERT INTO templates (name, body, description, owner_id, created_at, updated_at) "
                "VALUES ('t', 'b', '', 2, :t, :t)"
            ),
            {"t": stamp},
        )
    migrate.upgrade(url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT id, email FROM users ORDER BY id")).all() == [
            (1, "u1@example.com"),
            (2, "u2@example.com"),
        ]
        assert conn.execute(text("SELECT id, owner_id FROM templates")).all() == [(1, 2)]
        conn.execute(text("DELETE FROM templates"))
        conn.execute(text("DELETE FROM users WHERE id = 2"))
        conn.execute(
            text(
                "INSERT INTO users (email, name, created_at, updated_at) "
                "VALUES ('n@example.com', 'N', :t, :t)"
            ),
            {"t": stamp},
        )
        assert conn.execute(text("SELECT max(id) FROM users")).scalar_one() == 3
    engine.dispose()


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_first_and_second_requests_state_the_same_reset(new_app, storage):
    from tests.support.windows import clear_of_minute_edge

    extra = {"RATE_LIMIT_PER_MINUTE": 10}
    if storage == "redis":
        require_redis()
        extra["REDIS_URL"] = REDIS_URL
    client = new_app(**extra).test_client()
    clear_of_minute_edge()
    first = client.get("/api/v1/templates")
    time.sleep(1.1)
    second = client.get("/api/v1/templates")
    resets = [int(r.headers["X-RateLimit-Reset"]) for r in (first, second)]
    assert abs(resets[0] - resets[1]) <= 1, resets
    assert resets[0] > time.time() + 1  # not "now": the window has most of its minute ahead
    spans = [int(r.headers["RateLimit"].rpartition("t=")[2]) for r in (first, second)]
    assert spans[0] >= 2 and abs((spans[0] - spans[1]) - 1) <= 1, spans
