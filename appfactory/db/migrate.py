"""Bring the schema up to date with alembic, once, under a lock when the database has one."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from appfactory.config import sqlalchemy_url

log = logging.getLogger(__name__)

_SCRIPTS = os.path.join(os.path.dirname(__file__), "migrations")
# Any constant works; it only has to be the same for every instance of the service.
_ADVISORY_LOCK_ID = 724_113_001


def alembic_config() -> AlembicConfig:
    """An alembic configuration pointing at the packaged migration scripts."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _SCRIPTS)
    return cfg


def upgrade(database_url: str, revision: str = "head", connect_timeout: int = 10) -> None:
    """Migrate to `revision`; concurrent starts of several instances wait for each other."""
    url = sqlalchemy_url(database_url)
    # A server that accepts and never answers must not hold the start-up forever.
    connect_args = {"connect_timeout": connect_timeout} if url.startswith("postgresql") else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # A transaction-level lock, taken in the migrations' own transaction: it is released by
                # their COMMIT (or ROLLBACK) on the same server connection, which also holds under
                # PgBouncer's transaction pooling, where a session lock and its unlock could land on
                # two different server connections and the lock would outlive this process.
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)  # joins the transaction begun above
            conn.commit()
    finally:
        engine.dispose()


def upgrade_at_start(database_url: str, connect_timeout: int = 10) -> bool:
    """Migrate at service start; an unreachable database is logged, not fatal."""
    try:
        upgrade(database_url, connect_timeout=connect_timeout)
    except Exception as exc:
        log.error("Database migration at start failed; the service starts degraded: %s", exc)
        return False
    log.info("Database schema is up to date")
    return True


def follow(
    database_url: str, connect_timeout: int, wanted: Callable[[], bool], longest_wait_s: float = 15.0
) -> bool:
    """Bring the schema to head once the database answers: try with back-off (1 s doubling to
    `longest_wait_s`) while `wanted()`; True once done. The advisory lock keeps several instances
    following the same database from migrating at once."""
    log.warning("Database schema is not at head; retrying until the database answers")
    wait = 1.0
    while True:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not wanted():
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        try:
            upgrade(database_url, connect_timeout=connect_timeout)
        except Exception as exc:
            log.info("Database still not migrated (next try in %.0f s): %s", wait, exc.__class__.__name__)
            wait = min(wait * 2, longest_wait_s)
            continue
        log.warning("Database schema brought to head")
        return True
