"""Gunicorn settings, from the same validated configuration the app reads.

Every public module-level name here is read by gunicorn as a setting: helpers stay private.
"""

import os

from appfactory.serving.cooperative import make_cooperative

# First of all: under gevent (the default) the standard library is patched before the service or its
# libraries import socket, ssl or threading.
make_cooperative(os.environ)

from appfactory.observability.logging import logging_config  # noqa: E402
from appfactory.serving import master as _master  # noqa: E402
from appfactory.web.routing import REQUEST_LINE_BYTES  # noqa: E402

# What the master does besides reading these settings is appfactory/serving/master.py: it names the
# metrics directory (before prometheus-client is imported), parses the settings (a bad one: a CRITICAL
# line each, exit 1) and logs JSON from the first line; the hooks at the end call it.
_settings = _master.start(os.environ)

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
logger_class = _master.NoAccessLog  # the app writes the one line per request
accesslog = None
loglevel = _settings["LOG_LEVEL"].lower()
logconfig_dict = logging_config(_settings["LOG_LEVEL"], _settings["LOG_FORMAT"])


def on_starting(server):
    """Migrate the schema once before any worker forks, then start the metrics from zero."""
    _master.on_starting(server.log, _settings)


def child_exit(server, worker):
    """Fold a dead worker's metrics into the archive."""
    _master.worker_exited(worker.pid)


def on_exit(server):
    """Stop a schema follower still waiting; remove the metrics directory made for this run."""
    _master.on_exit()
