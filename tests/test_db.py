"""The engine is per process: a forked child never reuses its parent's connections."""

import os

from sqlalchemy import text

from appfactory.config import sqlalchemy_url
from appfactory.db import build_engine
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
