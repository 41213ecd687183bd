"""Gunicorn settings, from the same validated configuration the app reads.

Every public module-level name here is read by gunicorn as a setting: helpers stay private.
"""

import os

from appfactory.serving.cooperative import make_cooperative

# First of all: under gevent (the default) the standard library is patched before the service or its
# libraries import socket, ssl or threading.
make_cooperative(os.environ)

import logging  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

# prometheus-client picks single- or multi-process mode when first imported (by the app), so the
# directory the workers share is named before that; on_starting empties it.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="aigen-metrics-", dir=_shm)
    os.environ["AIGEN_METRICS_TEMP_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]  # removed at exit
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def _remove_own_metrics_dir() -> None:
    own = os.environ.get("AIGEN_METRICS_TEMP_DIR")
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)


from gunicorn import glogging  # noqa: E402

from appfactory import config as _config  # noqa: E402  ("config" is a gunicorn setting)
from appfactory.observability.logging import configure_logging, logging_config  # noqa: E402
from appfactory.observability.stdstreams import route_std_streams  # noqa: E402
from appfactory.serving import REQUEST_LINE_BYTES  # noqa: E402

try:
    _settings = _config.load(os.environ)
except _config.ConfigError as exc:
    configure_logging()
    for _line in exc.lines():
        logging.getLogger("gunicorn.error").critical(_line)
    _remove_own_metrics_dir()
    sys.exit(1)

# JSON from the first line on: gunicorn applies logconfig_dict only once its arbiter starts, and it
# prints some errors (bad settings, a worker that cannot import the app) straight to stderr.
configure_logging(_settings["LOG_LEVEL"], _settings["LOG_FORMAT"])
route_std_streams()


def _load_worker_libraries() -> None:
    """Import the libraries every worker imports anyway (never the app, nor what only a CLI needs).

    A worker's RSS counts the file pages it has touched. Loading libpq, OpenSSL, Kerberos and the
    other shared libraries behind psycopg2, SQLAlchemy and redis touches ~3 MiB of them (symbol
    tables, relocations) that serving never reads again: loaded here, no worker touches them.
    The modules' objects are in every worker either way.
    """
    import redis  # noqa: F401
    from sqlalchemy.engine import make_url

    url = make_url(_config.sqlalchemy_url(_settings["DATABASE_URL"] or "sqlite://"))
    try:
        url.get_dialect().import_dbapi()
    except ImportError:  # a driver that is not installed: the workers report it, as before
        pass


_load_worker_libraries()


class NoAccessLog(glogging.Logger):
    """gunicorn's logger with its access log off: the app writes the one line per request."""

    def access(self, resp, req, environ, request_time) -> None:
        return None


bind = f"0.0.0.0:{_settings['PORT']}"
workers = _settings["WEB_CONCURRENCY"]
# Model calls are slow I/O: under gevent each waits in a greenlet, so a worker holds hundreds of them
# (docs/serving.md); gthread holds one per thread. Both answer gunicorn's own refusals in JSON.
if _settings["GUNICORN_WORKER_CLASS"] == "gevent":
    from appfactory.serving.cooperative import cooperative_worker

    worker_class = cooperative_worker(_settings["REQUEST_HEADER_TIMEOUT_S"])
    worker_connections = _settings["GUNICORN_WORKER_CONNECTIONS"]
else:
    worker_class = "appfactory.serving.threaded.ThreadedWorker"
    threads = _settings["GUNICORN_THREADS"]
limit_request_line = REQUEST_LINE_BYTES  # what bounds a GET's prompt
# A worker must outlive the slowest upstream call it may legitimately wait for, and SIGTERM lets the
# generations in flight finish.
timeout = int(_settings["AI_TIMEOUT_S"]) + 15
graceful_timeout = int(_settings["AI_TIMEOUT_S"]) + 5
keepalive = 5
# Recycling bounds a slow leak; a new worker costs ~0.4 s of CPU, so at this service's rate (thousands
# of requests a second per worker) it happens every minute or so rather than every few seconds.
max_requests = 100_000
max_requests_jitter = 10_000
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
preload_app = False
# One fixed control-socket path per user would be shared by every instance on a host.
control_socket_disable = True
# One listening socket per worker spreads keep-alive connections evenly, but a worker that stops
# (recycling, reload) can reset connections queued on its socket: off by default (README "Deploy").
reuse_port = _settings["GUNICORN_REUSE_PORT"]
logger_class = NoAccessLog
accesslog = None
loglevel = _settings["LOG_LEVEL"].lower()
logconfig_dict = logging_config(_settings["LOG_LEVEL"], _settings["LOG_FORMAT"])


def _empty_metrics_dir() -> None:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


# How long the master waits for the start-up migration before it starts the workers without it.
_START_TASK_TIMEOUT_S = 120


def on_starting(server):
    """Migrate the schema once, before any worker forks, then start metrics from zero. When that
    fails (a database that is not up yet), a child of the master keeps trying until it succeeds."""
    migrated = _in_child_process(_migrate) == 0  # first: the metrics files it may write are emptied next
    _empty_metrics_dir()
    _check_connection_migration(server.log)
    if not migrated and not (_settings["DATABASE_URL"] or "sqlite:").startswith("sqlite:"):
        _start_child(_follow_schema)  # a server database may come up after the service


_MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def _check_connection_migration(log) -> None:
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


def _database_url() -> str:
    url = _settings["DATABASE_URL"]
    if url is None:
        from appfactory import create_app

        url = create_app().config["DATABASE_URL"]
    return url


def _migrate() -> int:
    from appfactory.db.migrate import upgrade_at_start

    return 0 if upgrade_at_start(_database_url(), connect_timeout=_settings["DB_CONNECT_TIMEOUT"]) else 3


def _follow_schema() -> int:
    """In a child of the master: migrate as soon as the database answers, while the master lives."""
    from appfactory.db.migrate import follow

    master = os.getppid()
    done = follow(_database_url(), _settings["DB_CONNECT_TIMEOUT"], lambda: os.getppid() == master)
    return 0 if done else 4


_children: list[int] = []  # start-up children still running: stopped with the master


def _start_child(task) -> int:
    """Run `task` in a forked child (its return value the exit status); returns the child's pid."""
    # What the task imports (alembic, mako, the app) stays out of the master, so out of every worker.
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


def _in_child_process(task) -> int | None:
    """Run `task` in a forked child and wait for it: its exit status, None when it took too long."""
    pid = _start_child(task)
    deadline = time.monotonic() + _START_TASK_TIMEOUT_S
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
        "start-up task did not finish within %ss; starting without it", _START_TASK_TIMEOUT_S
    )
    return None


def child_exit(server, worker):
    """Drop a dead worker's live gauges, and fold its counts into the archive files.

    Without the archive every recycled worker (max_requests) would leave its files behind, and the
    metrics directory and the cost of each /metrics scrape would grow for as long as the service runs.
    """
    from prometheus_client import multiprocess

    from appfactory.compat.prometheus_client import archive_dead_worker

    multiprocess.mark_process_dead(worker.pid)
    archive_dead_worker(os.environ["PROMETHEUS_MULTIPROC_DIR"], worker.pid)


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def on_exit(server):
    """Stop a schema follower still waiting for the database; remove the metrics directory this
    configuration made for itself."""
    for pid in _children:
        if _parent_of(pid) == os.getpid():  # not done, reaped, and its pid given to another process
            os.kill(pid, signal.SIGTERM)
    _remove_own_metrics_dir()
