"""What gunicorn's master does besides reading its settings; gunicorn.conf.py calls it from its hooks.

    start(environ)               the metrics directory named, the settings parsed (a bad one: a CRITICAL
                                 line each, exit 1), JSON logs from the first line, the workers'
                                 libraries loaded; returns the settings
    on_starting(log, settings)   the schema migrated once, in a child, before any worker forks (a child
                                 keeps trying while a server database is away); the metrics from zero
    worker_exited(pid)           a dead worker's metrics folded into the archive
    on_exit()                    a schema follower still waiting stopped; the metrics directory made for
                                 this run removed

What a start-up task imports (alembic, mako, the app) stays in a forked child: out of the master, so
out of every worker forked from it.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from gunicorn import glogging

from appfactory import config
from appfactory.serving import metrics_dir

# How long the master waits for the start-up migration before it starts the workers without it.
START_TASK_TIMEOUT_S = 120
_MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"

_children: list[int] = []  # start-up children still running: stopped with the master


class NoAccessLog(glogging.Logger):
    """gunicorn's logger with its access log off: the app writes the one line per request."""

    def access(self, resp, req, environ, request_time) -> None:
        return None


def start(environ: MutableMapping[str, str]) -> dict[str, Any]:
    """The master's first steps, before gunicorn reads a setting; the validated settings."""
    metrics_dir.name(environ)  # first: before anything imports prometheus-client
    from appfactory.observability.logging import configure_logging
    from appfactory.observability.stdstreams import route_std_streams

    try:
        settings = config.load(environ)
    except config.ConfigError as exc:
        configure_logging()
        for line in exc.lines():
            logging.getLogger("gunicorn.error").critical(line)
        metrics_dir.remove_own(environ)
        sys.exit(1)
    # JSON from the first line on: gunicorn applies logconfig_dict only once its arbiter starts, and it
    # prints some errors (bad settings, a worker that cannot import the app) straight to stderr.
    configure_logging(settings["LOG_LEVEL"], settings["LOG_FORMAT"])
    route_std_streams()
    _load_worker_libraries(settings)
    return settings


def _load_worker_libraries(settings: dict[str, Any]) -> None:
    """Import the libraries every worker imports anyway (never the app, nor what only a CLI needs).

    A worker's RSS counts the file pages it has touched. Loading libpq, OpenSSL, Kerberos and the
    other shared libraries behind psycopg2, SQLAlchemy and redis touches ~3 MiB of them (symbol
    tables, relocations) that serving never reads again: loaded here, no worker touches them.
    The modules' objects are in every worker either way.
    """
    import redis  # noqa: F401
    from sqlalchemy.engine import make_url

    url = make_url(config.sqlalchemy_url(settings["DATABASE_URL"] or "sqlite://"))
    try:
        url.get_dialect().import_dbapi()
    except ImportError:  # a driver that is not installed: the workers report it, as before
        pass


def on_starting(log: logging.Logger, settings: dict[str, Any]) -> None:
    """Migrate the schema once, before any worker forks, then start metrics from zero. When that
    fails (a database that is not up yet), a child of the master keeps trying until it succeeds."""
    migrated = _in_child_process(functools.partial(_migrate, settings)) == 0
    metrics_dir.empty(os.environ)  # after the migration: the metrics files it may write go too
    _check_connection_migration(log, settings["GUNICORN_REUSE_PORT"])
    if not migrated and not (settings["DATABASE_URL"] or "sqlite:").startswith("sqlite:"):
        _start_child(functools.partial(_follow_schema, settings))  # a server database may come up later


def worker_exited(pid: int) -> None:
    """A worker is gone (recycled, killed): its metrics are folded into the archive."""
    metrics_dir.worker_exited(os.environ, pid)


def on_exit() -> None:
    """Stop a schema follower still waiting for the database; remove the metrics directory this run
    made for itself."""
    for pid in _children:
        if _parent_of(pid) == os.getpid():  # not done, reaped, and its pid given to another process
            os.kill(pid, signal.SIGTERM)
    metrics_dir.remove_own(os.environ)


def _check_connection_migration(log: logging.Logger, reuse_port: bool) -> None:
    """Say how connections reach the workers, and warn when a stopping worker would reset more."""
    if not reuse_port:
        log.info("Listening on one socket shared by the workers")
        return
    log.info("Listening on one socket per worker (SO_REUSEPORT)")
    try:
        with open(_MIGRATE_REQ) as setting:
            enabled = setting.read().strip() != "0"
    except OSError:  # not Linux, or a kernel without it: nothing to say
        return
    if not enabled:
        log.warning(
            "net.ipv4.tcp_migrate_req is 0: connections waiting on a stopping worker's socket are "
            "reset; set it to 1, or GUNICORN_REUSE_PORT=false"
        )


def _database_url(settings: dict[str, Any]) -> str:
    url = settings["DATABASE_URL"]
    if url is None:
        from appfactory import create_app

        url = create_app().config["DATABASE_URL"]
    return url


def _migrate(settings: dict[str, Any]) -> int:
    from appfactory.db.migrate import upgrade_at_start

    url = _database_url(settings)
    return 0 if upgrade_at_start(url, connect_timeout=settings["DB_CONNECT_TIMEOUT"]) else 3


def _follow_schema(settings: dict[str, Any]) -> int:
    """In a child of the master: migrate as soon as the database answers, while the master lives."""
    from appfactory.db.migrate import follow

    master = os.getppid()
    done = follow(_database_url(settings), settings["DB_CONNECT_TIMEOUT"], lambda: os.getppid() == master)
    return 0 if done else 4


def _start_child(task: Callable[[], int | None]) -> int:
    """Run `task` in a forked child (its return value the exit status); returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            status = task() or 0
        except BaseException:
            logging.getLogger("gunicorn.error").exception("start-up task failed")
            status = 1
        finally:
            logging.shutdown()
            os._exit(status)
    _children.append(pid)
    return pid


def _in_child_process(task: Callable[[], int | None]) -> int | None:
    """Run `task` in a forked child and wait for it: its exit status, None when it took too long."""
    pid = _start_child(task)
    deadline = time.monotonic() + START_TASK_TIMEOUT_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            _children.remove(pid)
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    # A database that froze mid-migration: start degraded rather than never.
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    _children.remove(pid)
    logging.getLogger("gunicorn.error").error(
        "start-up task did not finish within %ss; starting without it", START_TASK_TIMEOUT_S
    )
    return None


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
