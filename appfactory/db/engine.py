"""Database: one pooled engine per process, one connection per app context."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import Connection, make_url

log = logging.getLogger(__name__)

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
        except engine.dialect.loaded_dbapi.Error as error:  # the pool then opens a fresh one
            raise exc.DisconnectionError("connection lost while idle in the pool") from error


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

    def probe(self) -> tuple[bool, float]:
        """Run SELECT 1 bounded by PROBE_TIMEOUT_S; returns (answered, latency in ms)."""
        return current_app.extensions["db_probe"].run(self.engine)


class _Probe:
    """Runs the health query on one reusable side thread so a frozen server cannot hang the caller.

    Concurrent callers share the attempt in flight; a stuck attempt answers "down" at once
    instead of piling up threads and connections.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: tuple[float, Future[bool]] | None = None
        self._queue: SimpleQueue[tuple[Engine, Future[bool]]] | None = None
        self._pid = 0

    def run(self, engine: Engine) -> tuple[bool, float]:
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
            answered = attempt.result(remaining)
        except FutureTimeout:
            answered = False
        return answered, round((time.perf_counter() - started) * 1000, 2)

    def _start_side_thread(self) -> None:
        # Daemon, unlike an executor's thread, so a probe stuck on a frozen server never holds up exit.
        # A forked child has none of its parent's threads: it starts its own and forgets their attempt.
        self._queue, self._pid, self._current = SimpleQueue(), os.getpid(), None
        threading.Thread(target=_serve_probes, args=(self._queue,), name="db-probe", daemon=True).start()


def _serve_probes(queue: SimpleQueue[tuple[Engine, Future[bool]]]) -> None:
    while True:
        engine, answer = queue.get()
        answer.set_result(_select_one(engine))


def _select_one(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(_SELECT_ONE)
        return True
    except Exception as exc:
        log.warning("Database probe failed: %s", exc.__class__.__name__)
        return False


_SELECT_ONE = text("SELECT 1")


db = Database()
