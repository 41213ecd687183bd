"""A frozen PostgreSQL costs a request DB_TIMEOUT_S at most, and the service heals once it thaws."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, func, select

from appfactory import create_app
from appfactory.config import sqlalchemy_url
from appfactory.db import migrate
from appfactory.db.models import templates
from tests.conftest import as_admin, base_overrides
from tests.support.services import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.failure]


@pytest.fixture
def frozen_pg():
    server = PostgresServer().start()
    migrate.upgrade(server.url)
    yield server
    server.thaw()
    server.close()


def _count(url: str) -> int:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(templates)).scalar_one()
    finally:
        engine.dispose()


def test_a_frozen_database_answers_503_within_the_deadline_and_heals(frozen_pg):
    app = create_app(base_overrides(DATABASE_URL=frozen_pg.url, DB_TIMEOUT_S=1))
    client = as_admin(app)
    try:
        created = client.post("/api/v1/templates", json={"name": "t", "body": "b"})
        assert created.status_code == 201
        item = created.headers["Location"]
        assert client.get(item).status_code == 200

        frozen_pg.freeze()
        for method, path, body in [
            ("GET", item, None),
            ("POST", "/api/v1/templates", {"name": "u", "body": "b"}),
        ]:
            started = time.monotonic()
            response = client.open(path, method=method, json=body)
            took = time.monotonic() - started
            assert response.status_code == 503, response.get_data(as_text=True)
            assert response.get_json()["error"]["code"] == "database_unavailable"
            assert response.headers["Retry-After"] == "2"
            assert took < 1.0 + 0.7, f"{method} took {took:.2f} s against a frozen database"
        frozen_pg.thaw()

        assert [client.get(item).status_code for _ in range(3)] == [200, 200, 200]
    finally:
        app.extensions["db"].dispose()
    assert _count(frozen_pg.url) <= 2  # the write during the freeze was never sent twice
