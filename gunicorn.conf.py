"""Gunicorn settings, from the same validated configuration the app reads.

Every public module-level name here is read by gunicorn as a setting: helpers stay private.
"""

import os
import sys

from appfactory import config as _config
from appfactory.logging import logging_config as _logging_config

try:
    _settings = _config.load(os.environ)
except _config.ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

bind = f"0.0.0.0:{_settings['PORT']}"
workers = _settings["WEB_CONCURRENCY"]
# Upstream model calls are slow I/O: threads keep a worker serving while one call waits.
worker_class = "gthread"
threads = _settings["GUNICORN_THREADS"]
# A worker must outlive the slowest upstream call it may legitimately wait for.
timeout = int(_settings["AI_TIMEOUT_S"]) + 15
graceful_timeout = 30
keepalive = 5
max_requests = 10_000
max_requests_jitter = 1_000
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
preload_app = False
accesslog = None  # the app logs one line per request itself
logconfig_dict = _logging_config(_settings["LOG_LEVEL"], _settings["LOG_FORMAT"])


def on_starting(server):
    """Migrate the schema once, in the master, before any worker forks."""
    from appfactory.migrate import upgrade_at_start

    url = _settings["DATABASE_URL"]
    if url is None:
        from appfactory import create_app

        url = create_app().config["DATABASE_URL"]
    upgrade_at_start(url)
