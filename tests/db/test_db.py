"""The engine is per process and fork-safe, reads run without a transaction, idle connections are checked."""

import os

from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from appfactory import create_app
from appfactory.config import sqlalchemy_url
from appfactory.db.engine import build_engine, db
from tests.conftest import base_overrides


def test_forked_child_starts_with_an_empty_pool(postgres):
    from appfactory import config

    settings = config.load({}, base_overrides(DATABASE_URL=postgres.url))
    settings["DATABASE_URL"] = sqlalchemy_url(settings["DATABASE_URL"])
    engine = build_engine(settings)
    with engine.connect() as conn:
        parent_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert engine.pool.checkedin() == 1

    pid = os.fork()
    if pid == 0:  # child: must open its own connection
        try:
            inherited = engine.pool.checkedin()
            with engine.connect() as conn:
                child_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            os._exit(0 if inherited == 0 and child_pid != parent_pid else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with engine.connect() as conn:  # the parent's connection still works
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == parent_pid
    engine.dispose()


def _engine(postgres):
    from appfactory import config

    settings = config.load({}, base_overrides(DATABASE_URL=postgres.url))
    settings["DATABASE_URL"] = sqlalchemy_url(settings["DATABASE_URL"])
    return build_engine(settings)


def test_a_connection_dropped_while_idle_is_replaced_before_use(postgres, monkeypatch):
    monkeypatch.setattr("appfactory.db.engine.PING_AFTER_IDLE_S", 0.0)
    engine = _engine(postgres)
    with engine.connect() as conn:
        dropped = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_engine(sqlalchemy_url(postgres.url), poolclass=NullPool)
    with admin.connect() as conn:  # as a server restart would
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}).scalar_one()
    admin.dispose()
    with engine.connect() as conn:  # no error: the checkout ping noticed and opened a new connection
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != dropped
    engine.dispose()


def test_reads_leave_no_transaction_open(postgres):
    engine = _engine(postgres)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        assert conn.connection.dbapi_connection.get_transaction_status() == TRANSACTION_STATUS_IDLE
    engine.dispose()


def test_health_probe_answers_in_a_forked_child(postgres):
    app = create_app(base_overrides(DATABASE_URL=postgres.url))
    with app.app_context():
        assert db.probe()[0] == "current"
    pid = os.fork()
    if pid == 0:  # the parent's probe thread does not exist here
        try:
            with app.app_context():
                os._exit(0 if db.probe()[0] == "current" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    app.extensions["db"].dispose()  # later tests count the session database's connections
    assert os.waitstatus_to_exitcode(status) == 0


def test_gssapi_encryption_is_not_offered_unless_asked_for(postgres, monkeypatch):
    from appfactory.db.engine import engine_options

    monkeypatch.delenv("PGGSSENCMODE", raising=False)
    url = sqlalchemy_url(postgres.url)
    assert engine_options(_settings(url))["connect_args"]["gssencmode"] == "disable"
    engine = _engine(postgres)
    with engine.connect() as conn:  # what libpq was given
        assert conn.connection.dbapi_connection.get_dsn_parameters()["gssencmode"] == "disable"
    engine.dispose()
    # Asked for in the URL or libpq's environment variable: libpq's own setting applies.
    assert "gssencmode" not in engine_options(_settings(url + "?gssencmode=prefer"))["connect_args"]
    monkeypatch.setenv("PGGSSENCMODE", "prefer")
    assert "gssencmode" not in engine_options(_settings(url))["connect_args"]


def _settings(url):
    from appfactory import config

    return config.load({}, base_overrides(DATABASE_URL=url))


def test_one_connection_per_app_context_goes_back_to_the_pool_at_teardown(app):
    pool = app.extensions["db"].pool
    idle = pool.checkedout()
    with app.app_context():
        conn = db.connection()
        assert db.connection() is conn
        assert pool.checkedout() == idle + 1
    assert pool.checkedout() == idle
    assert conn.closed
    with app.app_context():  # a new context borrows again
        assert db.connection() is not conn
