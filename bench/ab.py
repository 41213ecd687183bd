"""`python -m bench.ab`: per-request cost of configuration variants, in process, on real PostgreSQL/Redis.

Each variant is its own process (Flask-Limiter's `limiter` is one instance per process, so two apps in one
process would share its settings); rounds are interleaved and each figure is the median over rounds of
wall and CPU microseconds per request through the Flask test client (no gunicorn, no network client).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.environment import Environment

# name: (app config overrides, engine option overrides)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "as configured": ({}, {}),
    "limiter: fixed-window": ({"RATELIMIT_STRATEGY": "fixed-window"}, {}),
    "limiter: no headers": ({"RATELIMIT_HEADERS_ENABLED": False}, {}),
    "limiter: disabled": ({"RATELIMIT_ENABLED": False}, {}),
    "db: pool_pre_ping": ({}, {"pool_pre_ping": True}),
    "db: transactions": ({}, {"isolation_level": "READ COMMITTED", "pool_reset_on_return": "rollback"}),
    "db: both (pre-AUTOCOMMIT)": (
        {},
        {"pool_pre_ping": True, "isolation_level": "READ COMMITTED", "pool_reset_on_return": "rollback"},
    ),
}


def _serve(conn: Connection, overrides: dict, engine_extra: dict, path: str, requests: int) -> None:
    """Child: build the variant's app, then time `requests` GETs each time the parent asks."""
    from sqlalchemy import create_engine

    from appfactory import create_app
    from appfactory.db.engine import engine_options

    app = create_app(overrides)
    if engine_extra:
        options = {**engine_options(app.config), **engine_extra}
        app.extensions["db"] = create_engine(app.config["DATABASE_URL"], **options)
    client = app.test_client()
    for _ in range(50):
        assert client.get(path).status_code == 200
    while conn.recv():
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(requests):
            client.get(path)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        conn.send((wall * 1e6 / requests, cpu * 1e6 / requests))


def compare(path_of: str, requests: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall µs, CPU µs) per request for every variant."""
    context = multiprocessing.get_context("spawn")
    with Environment() as env:
        base = {
            "DATABASE_URL": env.database.url,
            "REDIS_URL": env.redis_url,
            "CACHE_NAMESPACE": env.namespace,
            "RATE_LIMIT_PER_MINUTE": 10**9,
            "LOG_LEVEL": "WARNING",
        }
        path = path_of.format(template_id=env.template_id)
        children = {}
        for name, (overrides, engine_extra) in VARIANTS.items():
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve, args=(child, {**base, **overrides}, engine_extra, path, requests)
            )
            process.start()
            children[name] = (process, parent)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        try:
            for _ in range(rounds):
                for name, (_, parent) in children.items():
                    parent.send(True)
                    samples[name].append(parent.recv())
        finally:
            for process, parent in children.values():
                parent.send(False)
                process.join(timeout=30)
    return {
        name: (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs))
        for name, runs in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--path", default="/api/v1/templates/{template_id}")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    figures = compare(args.path, args.requests, args.rounds)
    wall0, cpu0 = figures["as configured"]
    print(f"{'variant':24} {'wall µs':>8} {'':>6} {'CPU µs':>8}")
    for name, (wall, cpu) in figures.items():
        print(f"{name:24} {wall:8.0f} {wall / wall0:5.2f}× {cpu:8.0f} {cpu / cpu0:5.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
