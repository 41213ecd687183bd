"""The schema's revision as the code knows it, a database without the schema (503, never 500), the keys'
token budgets (0004) migrated up and down, and a read on a dead pooled connection retried once on a
fresh one (a write never)."""

from __future__ import annotations

import psycopg2
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from appfactory import create_app
from appfactory.config import sqlalchemy_url
from appfactory.db import migrate
from appfactory.db.models import SCHEMA_REVISION
from tests.conftest import as_admin, base_overrides
from tests.support.services import PG_ADMIN_URL, PostgresDatabase


def test_the_code_knows_alembics_head():
    assert ScriptDirectory.from_config(migrate.alembic_config()).get_current_head() == SCHEMA_REVISION


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """A database the service can reach, with no schema in it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    database = PostgresDatabase()
    yield database.url
    database.drop()


def test_without_the_schema_data_requests_are_503_and_health_says_behind(empty_database):
    app = create_app(base_overrides(DATABASE_URL=empty_database))
    try:
        client = app.test_client()
        health = client.get("/health")
        assert health.status_code == 503 and client.get("/health/ready").status_code == 503
        assert health.get_json()["database"] == "connected" and health.get_json()["schema"] == "behind"
        for method, path, body in [
            ("GET", "/api/v1/templates", None),
            ("GET", "/api/v1/templates/1", None),
            ("GET", "/api/v1/users/1", None),
            ("POST", "/api/v1/users", {"email": "a@example.com", "name": "A"}),
            ("POST", "/api/v1/ai/generate", {"template_id": 1}),
        ]:
            response = client.open(path, method=method, json=body)
            assert response.status_code == 503, (path, response.get_json())
            assert response.get_json()["error"]["code"] == "database_unavailable"
            assert response.headers["Retry-After"] == "2"
        migrate.upgrade(empty_database)  # what the schema follower does once the database answers
        health = client.get("/health")
        assert health.status_code == 200 and health.get_json()["schema"] == "current"
        assert client.get("/api/v1/templates").status_code == 200
    finally:
        app.extensions["db"].dispose()


def _downgrade(database_url: str, revision: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.begin() as conn:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


def test_keys_token_budgets_migrate_up_and_down_keeping_keys_and_ids(empty_database):
    migrate.upgrade(empty_database, revision="0003")
    engine = create_engine(sqlalchemy_url(empty_database))
    user = "INSERT INTO users (email, name, created_at, updated_at) VALUES ('u@x.io', 'U', :t, :t)"
    key = "INSERT INTO api_keys (user_id, hint, secret_hash, admin, created_at) VALUES (1, :h, 'x', :f, :t)"
    stamp = {"f": False, "t": "2026-01-01 00:00:00"}
    rows = "SELECT id, hint, tokens_per_minute, tokens_per_day FROM api_keys ORDER BY id"
    try:
        with engine.begin() as conn:
            conn.execute(text(user), stamp)
            for hint in ("a", "b"):
                conn.execute(text(key), {"h": hint, **stamp})
            conn.execute(text("DELETE FROM api_keys WHERE hint = 'b'"))  # the newest: id 2 is spent
        migrate.upgrade(empty_database)
        with engine.begin() as conn:
            conn.execute(text("UPDATE api_keys SET tokens_per_minute = 5"))
            assert conn.execute(text(rows)).all() == [(1, "a", 5, None)]
        engine.dispose()
        _downgrade(empty_database, "0003")
        columns = {column["name"] for column in inspect(engine).get_columns("api_keys")}
        assert "revoked_at" in columns and not columns & {"tokens_per_minute", "tokens_per_day"}
        with engine.begin() as conn:
            conn.execute(text(key), {"h": "c", **stamp})  # SQLite's copied table still skips id 2
        engine.dispose()
        migrate.upgrade(empty_database)
        with engine.begin() as conn:
            assert conn.execute(text(rows)).all() == [(1, "a", None, None), (3, "c", None, None)]
    finally:
        engine.dispose()


def _terminate_backends(database_url: str) -> int:
    """What a server restart or a failover does to the service's pooled connections."""
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'aigen'",
            (database_url.rsplit("/", 1)[1],),
        )
        killed = cur.fetchone()[0]
    admin.close()
    return killed


def test_a_read_on_a_dead_pooled_connection_is_retried_a_write_is_not(postgres):
    app = create_app(base_overrides(DATABASE_URL=postgres.url))
    try:
        item = as_admin(app).post("/api/v1/templates", json={"name": "t", "body": "b"}).headers["Location"]
        client = app.test_client()  # no key: each request below makes exactly one statement
        for _ in range(2):  # a read, then a read right after its connection died
            assert client.get(item).status_code == 200
            assert _terminate_backends(postgres.url) >= 1
        assert client.get("/api/v1/templates").status_code == 200
        assert _terminate_backends(postgres.url) >= 1
        user = {"email": "once@example.com", "name": "Once"}
        write = client.post("/api/v1/users", json=user)
        assert write.status_code == 503 and write.get_json()["error"]["code"] == "database_unavailable"
        assert client.post("/api/v1/users", json=user).status_code == 201  # it was not written before
    finally:
        app.extensions["db"].dispose()
