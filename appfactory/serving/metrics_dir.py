"""The directory the workers' Prometheus metrics share (multiprocess mode), in the master's care.

prometheus-client picks single- or multi-process mode when it is first imported (by the app), so the
master names the directory before that (`name`), empties it before the workers start (`empty`), folds
a dead worker's files into the archive (`worker_exited`) and removes a directory it made itself when it
exits (`remove_own`). Nothing here imports prometheus-client at module level.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping

DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
OWN_ENV = "AIGEN_METRICS_TEMP_DIR"  # set when the master made the directory: removed at exit


def name(environ: MutableMapping[str, str]) -> None:
    """The directory from DIR_ENV, or a temporary one of this run's own (in /dev/shm when there is one)."""
    if not environ.get(DIR_ENV):
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        environ[DIR_ENV] = tempfile.mkdtemp(prefix="aigen-metrics-", dir=shm)
        environ[OWN_ENV] = environ[DIR_ENV]
    os.makedirs(environ[DIR_ENV], exist_ok=True)


def empty(environ: MutableMapping[str, str]) -> None:
    """Start from zero: the files an earlier run (or the start-up migration) left go."""
    directory = environ[DIR_ENV]
    for file_name in os.listdir(directory):
        if file_name.endswith(".db"):
            os.unlink(os.path.join(directory, file_name))


def worker_exited(environ: MutableMapping[str, str], pid: int) -> None:
    """Drop a dead worker's live gauges, and fold its counts into the archive files.

    Without the archive every recycled worker (max_requests) would leave its files behind, and the
    metrics directory and the cost of each /metrics scrape would grow for as long as the service runs.
    """
    from prometheus_client import multiprocess

    from appfactory.compat.prometheus_client import archive_dead_worker

    multiprocess.mark_process_dead(pid)
    archive_dead_worker(environ[DIR_ENV], pid)


def remove_own(environ: MutableMapping[str, str]) -> None:
    """Remove the directory when this run made it (never one the operator named)."""
    own = environ.get(OWN_ENV)
    if own and own == environ.get(DIR_ENV):
        shutil.rmtree(own, ignore_errors=True)
