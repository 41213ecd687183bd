"""Server time the request log line and metrics add: gunicorns with and without them, side by side.

Run from the repository root: `.venv/bin/python -m bench.observability_overhead [requests] [path]`.
Requests alternate between the servers, so all see the same machine load. Then the hook's step alone
is timed in this process (multiprocess metrics, log lines to a file).
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from functools import partial

import requests

from tests.support.gunicorn import Gunicorn

VARIANTS = {
    "log line + metrics": {"LOG_LEVEL": "INFO", "METRICS_ENABLED": "true"},
    "log line only": {"LOG_LEVEL": "INFO", "METRICS_ENABLED": "false"},
    "metrics only": {"LOG_LEVEL": "WARNING", "METRICS_ENABLED": "true"},
    "neither": {"LOG_LEVEL": "WARNING", "METRICS_ENABLED": "false"},
}


def _server_ms(response: requests.Response) -> float:
    return float(response.headers["X-Process-Time"].removesuffix("ms"))


def main(count: int = 3000, path: str = "/health/live") -> None:
    base = {
        "DATABASE_URL": f"sqlite:///{tempfile.mkdtemp()}/bench.db",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "GUNICORN_THREADS": "1",
    }
    servers = {name: Gunicorn({**base, **env}, workers=1) for name, env in VARIANTS.items()}
    server_ms: dict[str, list[float]] = {name: [] for name in servers}
    round_trip_ms: dict[str, list[float]] = {name: [] for name in servers}
    try:
        sessions = {name: (server.start(), requests.Session()) for name, server in servers.items()}
        for _ in range(200):  # warm up both workers
            for server, session in sessions.values():
                session.get(server.url + path)
        for _ in range(count):
            for name, (server, session) in sessions.items():
                started = time.perf_counter()
                response = session.get(server.url + path)
                round_trip_ms[name].append((time.perf_counter() - started) * 1000)
                server_ms[name].append(_server_ms(response))
    finally:
        for server in servers.values():
            server.__exit__()
    print(f"{count} requests each to {path}, alternating; medians:")
    for name in servers:
        print(
            f"  {name:20} X-Process-Time {statistics.median(server_ms[name]):.3f} ms"
            f"   round trip {statistics.median(round_trip_ms[name]):.3f} ms"
        )


def in_process(path: str = "/health/live") -> None:
    """Time the after-request step (metrics + log line) alone, with each part on and off."""
    directory = tempfile.mkdtemp()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # before prometheus_client is imported
    from flask import Response

    from appfactory import create_app
    from appfactory.web import hooks

    print("after-request step alone, in process (min of 5 x 5000):")
    log_file = open(os.path.join(directory, "log.jsonl"), "a")
    try:
        for name, env in VARIANTS.items():
            app = create_app({"DATABASE_URL": f"sqlite:///{directory}/bench.db", **env})
            for handler in logging.getLogger().handlers:
                handler.setStream(log_file)
            with app.test_request_context(path):
                app.preprocess_request()
                step = partial(hooks._observer(app), Response("{}"), 0.3)
                best = min(timeit.repeat(step, number=5000, repeat=5))
            print(f"  {name:20} {best / 5000 * 1e6:.1f} us per request")
    finally:
        log_file.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) if a.isdigit() else a for a in sys.argv[1:]))
    in_process(*(a for a in sys.argv[2:3]))
