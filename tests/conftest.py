"""Fixtures: the app on SQLite and on the machine's PostgreSQL, its client and CLI runner."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from contextlib import ExitStack

import pytest
from sqlalchemy import create_engine, text

from appfactory import create_app
from appfactory.config import sqlalchemy_url
from appfactory.db import migrate
from appfactory.db.models import metadata
from tests.support.services import PgBouncer, PostgresDatabase, delete_namespace, require_redis


def pytest_unconfigure(config):
    """Leave nothing in the temp folder: pytest empties its per-user folder (retention "none") only."""
    import getpass
    import os
    import tempfile

    try:
        os.rmdir(os.path.join(tempfile.gettempdir(), f"pytest-of-{getpass.getuser()}"))
    except OSError:  # not empty (another session's), or not there
        pass


@pytest.fixture(scope="session", autouse=True)
def _forget_test_keys():
    """Delete what the session's apps left in the shared Redis (the hit counters outlive a test)."""
    yield
    import redis

    from appfactory.cache.stats import FLUSH_EVERY_S
    from tests.support.services import REDIS_URL, delete_namespace

    time.sleep(FLUSH_EVERY_S + 0.2)  # the background flushers write their last counts
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=1)
        for namespace in _NAMESPACES:
            delete_namespace(client, namespace)
    except redis.RedisError:
        pass  # no Redis, nothing was written to it


@pytest.fixture(scope="session")
def postgres():
    """A migrated database of its own on the machine's PostgreSQL; reached through a PgBouncer in
    transaction pooling when AIGEN_TEST_THROUGH_PGBOUNCER is set (tests/scaleout runs tests so)."""
    # Dropped however the set-up ends (PgBouncer absent, a failed migration), after PgBouncer stops.
    with PostgresDatabase() as database, ExitStack() as stack:
        if os.environ.get("AIGEN_TEST_THROUGH_PGBOUNCER"):
            bouncer = PgBouncer(pool_size=4)
            stack.callback(bouncer.close)
            database.url = bouncer.start().url(database.url)
        migrate.upgrade(database.url)
        yield database


def truncate(url: str) -> None:
    """Empty every table and restart the ids: the next test starts from a fresh database."""
    engine = create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        names = ", ".join(table.name for table in reversed(metadata.sorted_tables))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


# Every key namespace this session's apps were given: their keys are deleted at the end.
_NAMESPACES: set[str] = set()


@pytest.fixture
def namespace():
    """A CACHE_NAMESPACE on the machine's Redis (which must answer), its keys deleted at the end."""
    require_redis().close()
    name = key_namespace()
    yield name
    with require_redis() as client:
        delete_namespace(client, name)


def key_namespace() -> str:
    """A CACHE_NAMESPACE of its own for one app or server; its Redis keys go at the session's end."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    _NAMESPACES.add(namespace)
    return namespace


def base_overrides(**extra) -> dict:
    """Test settings: no Redis, unique key namespace, quiet logs."""
    namespace = key_namespace()
    return {
        "TESTING": True,
        "REDIS_URL": None,
        "CACHE_NAMESPACE": namespace,
        "LOG_LEVEL": "WARNING",
        "AI_LOCAL_LATENCY_MS": 0,
        "RATE_LIMIT_PER_MINUTE": 10_000,
        "RATE_LIMIT_SIGNUPS_PER_MINUTE": 10_000,
        "RATE_LIMIT_SIGNUPS_PER_HOUR": 10_000,
        "SIGNUPS_PER_DAY": 1_000_000,
        "WEB_CONCURRENCY": 1,  # one process: the in-memory rate limit share is the whole limit
        # Generation without a key, so cache and upstream tests need none; tests/identity/ tests
        # the default (a key required) by setting it back to None.
        "AI_ALLOW_ANONYMOUS": True,
        **extra,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test that uses it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        migrate.upgrade(url)
        yield url
        return
    database = request.getfixturevalue("postgres")
    yield database.url
    truncate(database.url)


@pytest.fixture
def app(database_url):
    app = create_app(base_overrides(DATABASE_URL=database_url))
    yield app
    app.extensions["db"].dispose()


def as_admin(app):
    """A test client whose every request carries a new admin key."""
    from tests.support.keys import issue_key

    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issue_key(app.config['DATABASE_URL'])}"
    return client


@pytest.fixture
def client(app):
    """The app's test client with an admin key: writes go through (tests/identity/ tests the keys)."""
    return as_admin(app)


@pytest.fixture
def anonymous_client(app):
    return app.test_client()


@pytest.fixture
def shared_app(database_url):
    """The app with the shared cache and limits on the machine's Redis, as several workers run it."""
    from tests.support.services import REDIS_URL, require_redis

    require_redis()
    app = create_app(base_overrides(DATABASE_URL=database_url, REDIS_URL=REDIS_URL))
    yield app
    app.extensions["db"].dispose()
    app.extensions["response_cache"].counters.flush()
    app.extensions["redis"].client.close()


@pytest.fixture
def shared_client(shared_app):
    return as_admin(shared_app)


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def new_app(tmp_path):
    """create_app(overrides) on a migrated SQLite file; its pools are closed at the end."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    apps = []

    def build(**overrides):
        app = create_app({**base_overrides(DATABASE_URL=url), **overrides})
        _NAMESPACES.add(app.config["CACHE_NAMESPACE"])  # a test may have chosen its own
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["db"].dispose()
        if (state := app.extensions["redis"]) is not None:
            app.extensions["response_cache"].counters.flush()
            state.client.close()


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()
