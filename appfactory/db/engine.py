"""Database: one pooled engine per process, one connection per app context."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Any, TypeVar

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import Connection, make_url

from appfactory.db.models import SCHEMA_REVISION

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_TIMEOUT_S = 1.0
# A connection back in the pool for longer than this is pinged before reuse; a busy pool never is.
PING_AFTER_IDLE_S = 1.0


def engine_options(config: dict[str, Any]) -> dict[str, Any]:
    """Pool settings from the configuration; SQLite gets its thread-safe defaults."""
    url = make_url(config["DATABASE_URL"])
    # Every write is one statement and reads need no transaction: AUTOCOMMIT saves the BEGIN, and with
    # nothing left open the ROLLBACK on return to the pool is skipped as well. A future write of several
    # statements that must be atomic needs conn.execution_options(isolation_level="READ COMMITTED").
    options: dict[str, Any] = {
        "pool_recycle": config["DB_POOL_RECYCLE"],
        "isolation_level": "AUTOCOMMIT",
        "pool_reset_on_return": None,
    }
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"check_same_thread": False, "timeout": config["DB_POOL_TIMEOUT"]}
        return options
    options.update(
        pool_size=config["DB_POOL_SIZE"],
        max_overflow=config["DB_MAX_OVERFLOW"],
        pool_timeout=config["DB_POOL_TIMEOUT"],
    )
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = {
            "connect_timeout": config["DB_CONNECT_TIMEOUT"],
            "application_name": "aigen",
            # A frozen server would otherwise hold a request forever.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        # libpq's default (prefer) sets up Kerberos on every connect to offer GSSAPI encryption, which
        # costs each worker ~0.7 MiB of RSS; a URL or PGGSSENCMODE that asks for it still gets it.
        if "gssencmode" not in url.query and "PGGSSENCMODE" not in os.environ:
            options["connect_args"]["gssencmode"] = "disable"
    return options


def _enable_sqlite_foreign_keys(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def _ping_idle_connections(engine: Engine) -> None:
    """pool_pre_ping for connections that sat idle: a restarted server is noticed before a request fails.

    Pinging on every checkout would add a round trip to each request of a busy pool; a connection reused
    within PING_AFTER_IDLE_S is used as is (a disconnect there invalidates the whole pool at once).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if _is_deadline(error):  # frozen, not restarted: a new connection would wait as long again
                raise exc.OperationalError("ping", None, error) from error
            raise exc.DisconnectionError("connection lost while idle in the pool") from error  # a fresh one


def _forget_pool_after_fork(engine: Engine) -> None:
    """A forked child must never reuse its parent's sockets: drop them without closing."""
    ref = weakref.ref(engine)

    def _after_fork() -> None:
        if (alive := ref()) is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork)


def _bound_every_call(engine: Engine, seconds: float) -> None:
    """PostgreSQL: a client-side deadline on every connect and statement (db/deadline.py)."""
    if engine.dialect.name != "postgresql":
        return
    from appfactory.db import deadline

    deadline.enforce(seconds)

    @event.listens_for(engine, "handle_error")
    def _deadline_is_a_disconnect(context) -> None:
        if isinstance(context.original_exception, deadline.DeadlineExceeded):
            context.is_disconnect = True  # the pool drops the connection (closed by the deadline)


def build_engine(config: dict[str, Any]) -> Engine:
    """Create the pooled engine; no connection is opened until first use."""
    engine = create_engine(config["DATABASE_URL"], **engine_options(config))
    _bound_every_call(engine, config["DB_TIMEOUT_S"])
    _enable_sqlite_foreign_keys(engine)
    _ping_idle_connections(engine)
    _forget_pool_after_fork(engine)
    return engine


class Database:
    """Flask extension holding the engine in app.extensions and a connection on g."""

    def init_app(self, app: Flask) -> None:
        app.extensions["db"] = build_engine(app.config)
        app.extensions["db_probe"] = _Probe()
        app.teardown_appcontext(self._release)

    @property
    def engine(self) -> Engine:
        return current_app.extensions["db"]

    def connection(self) -> Connection:
        """The app context's connection, borrowed from the pool on first use."""
        # Runs on every database request: one context lookup for g (and one for the app on first use).
        notes = g._get_current_object()
        conn = notes.get("db_conn")
        if conn is None:
            conn = notes.db_conn = current_app.extensions["db"].connect()
        return conn

    def discard_connection(self) -> None:
        """Drop the app context's connection (it died): the next `connection()` checks out another."""
        conn = g._get_current_object().pop("db_conn", None)
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:  # already unusable: nothing left to close
                log.debug("Could not invalidate a dead connection", exc_info=True)

    def release_connection(self) -> None:
        """Give the app context's connection back to the pool now, before a long wait that needs
        none (a model call): the next `connection()` borrows one again."""
        if has_app_context():
            self._release(None)

    def _release(self, exc: BaseException | None) -> None:
        conn = g.pop("db_conn", None)
        if conn is None:
            return
        try:
            if exc is not None and conn.in_transaction():
                conn.rollback()
            conn.close()  # back to the pool
        except Exception:  # a dead connection must not fail the teardown
            log.warning("Could not return a database connection to the pool", exc_info=True)
            conn.invalidate()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection of its own in one transaction, for a write of several statements that must
        land together or not at all (connections otherwise run in AUTOCOMMIT)."""
        engine = self.engine
        level = "SERIALIZABLE" if engine.dialect.name == "sqlite" else "READ COMMITTED"
        with engine.connect().execution_options(isolation_level=level) as conn, conn.begin():
            yield conn

    def pool_status(self) -> dict[str, int]:
        """Size, checked-out and overflow connections of this worker's pool."""
        pool = self.engine.pool
        return {
            "size": getattr(pool, "size", lambda: 0)(),
            "checked_out": getattr(pool, "checkedout", lambda: 0)(),
            "overflow": max(0, getattr(pool, "overflow", lambda: 0)()),
        }

    def probe(self) -> tuple[str, float]:
        """Read the schema's revision, bounded by PROBE_TIMEOUT_S: (state, latency in ms), the state
        CURRENT (answered, schema at head), BEHIND (answered, schema not at head) or DOWN."""
        return current_app.extensions["db_probe"].run(self.engine)


def retried_read(read: Callable[..., T]) -> Callable[..., T]:
    """A read that failed because its pooled connection was dead (a restarted or failed-over server)
    runs once more on a fresh one. Only reads: a write that failed may have been applied, so it is
    never repeated blindly. A call past DB_TIMEOUT_S is not retried either: that would double the wait.
    """

    @functools.wraps(read)
    def once_more(*args: Any, **kwargs: Any) -> T:
        try:
            return read(*args, **kwargs)
        except exc.DBAPIError as error:
            if not error.connection_invalidated or _past_deadline(error):
                raise
            log.info("Read on a dead pooled connection retried on a fresh one")
            db.discard_connection()
            return read(*args, **kwargs)

    return once_more


def _past_deadline(error: exc.DBAPIError) -> bool:
    return _is_deadline(error.orig)


def _is_deadline(error: BaseException | None) -> bool:
    from appfactory.db.deadline import DeadlineExceeded

    return isinstance(error, DeadlineExceeded)


class _Probe:
    """Runs the health query on one reusable side thread so a frozen server cannot hang the caller.

    Concurrent callers share the attempt in flight; a stuck attempt answers "down" at once
    instead of piling up threads and connections.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: tuple[float, Future[str]] | None = None
        self._queue: SimpleQueue[tuple[Engine, Future[str]]] | None = None
        self._pid = 0

    def run(self, engine: Engine) -> tuple[str, float]:
        started = time.perf_counter()
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._start_side_thread()
            if self._current is None or self._current[1].done():
                self._current = (started, Future())
                self._queue.put((engine, self._current[1]))
            attempt_started, attempt = self._current
        remaining = max(0.0, PROBE_TIMEOUT_S - (started - attempt_started))
        try:
            state = attempt.result(remaining)
        except FutureTimeout:
            state = DOWN
        return state, round((time.perf_counter() - started) * 1000, 2)

    def _start_side_thread(self) -> None:
        # Daemon, unlike an executor's thread, so a probe stuck on a frozen server never holds up exit.
        # A forked child has none of its parent's threads: it starts its own and forgets their attempt.
        self._queue, self._pid, self._current = SimpleQueue(), os.getpid(), None
        threading.Thread(target=_serve_probes, args=(self._queue,), name="db-probe", daemon=True).start()


def _serve_probes(queue: SimpleQueue[tuple[Engine, Future[str]]]) -> None:
    while True:
        engine, answer = queue.get()
        answer.set_result(_schema_state(engine))


def _schema_state(engine: Engine) -> str:
    try:
        with engine.connect() as conn:
            revision = conn.execute(_REVISION).scalar()
    except exc.DBAPIError as error:
        if missing_table(error):  # it answered: the schema is not there yet
            return BEHIND
        log.warning("Database probe failed: %s", error.__class__.__name__)
        return DOWN
    except Exception as error:
        log.warning("Database probe failed: %s", error.__class__.__name__)
        return DOWN
    return CURRENT if revision == SCHEMA_REVISION else BEHIND


def missing_table(error: exc.DBAPIError) -> bool:
    """Whether the database answered that a table does not exist (the schema is not at head)."""
    original = error.orig
    if getattr(original, "pgcode", None) in ("42P01", "42703"):  # undefined table, undefined column
        return True
    return "no such table" in str(original) or "no such column" in str(original)


# What the health probe answers about the database.
CURRENT, BEHIND, DOWN = "current", "behind", "down"
_REVISION = text("SELECT version_num FROM alembic_version")


db = Database()
