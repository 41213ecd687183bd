"""`python -m bench.hotpath`: what one request costs inside the app, without gunicorn or a client.

Builds the service on the machine's Redis (its own key namespace, deleted at the end) and a throwaway
SQLite file, or `--database-url` (migrated, and given one template when it has none, so
`--path /api/v1/templates/1` reads a row), then calls the WSGI app directly on a prebuilt environ: the
figure is CPU µs per request, the minimum over rounds (the least disturbed). `--profile` prints where
the time goes (cProfile).

For a figure that does not move with the machine's load, count instructions instead:
`valgrind --tool=callgrind python -m bench.hotpath --requests N --rounds 1` for two values of N; the
difference of the two totals divided by the difference of N is the instructions per request
(`PYTHONHASHSEED=0` and `setarch -R`, no address randomisation, keep two runs of the same code within
~0.2 % of each other). A template read: `--path /api/v1/templates/1 --database-url postgresql://...`.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

import redis

from tests.support.keys import issue_key
from tests.support.services import delete_namespace

HIT_PATH = "/api/v1/ai/generate?prompt=hot-path"


def build(
    path: str, redis_url: str, namespace: str, database_url: str, with_key: bool = False
) -> Callable[[], bytes]:
    """The app, warmed on `path` (with a new API key when `with_key`); returns a function serving
    one request and returning its body."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        directory = tempfile.mkdtemp(prefix="hotpath-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from appfactory import create_app
    from appfactory.db.migrate import upgrade

    upgrade(database_url)
    _seed_one_template(database_url)
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CACHE_NAMESPACE": namespace,
            "AI_LOCAL_LATENCY_MS": 0,
            "RATE_LIMIT_PER_MINUTE": 10**9,
            "WEB_CONCURRENCY": 1,
            "AI_ALLOW_ANONYMOUS": True,
        }
    )
    authorization = (
        {"HTTP_AUTHORIZATION": f"Bearer {issue_key(database_url, admin=False)}"} if with_key else {}
    )
    _silence_logs()
    script, _, query = path.partition("?")
    statuses: list[str] = []

    def serve() -> bytes:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": script,
            "QUERY_STRING": query,
            "SERVER_NAME": "bench",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "bench",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            **authorization,
        }
        body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        try:
            return b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()

    for _ in range(200):
        serve()
    if not statuses[-1].startswith("200"):
        raise SystemExit(f"{path} answers {statuses[-1]}")
    return serve


def _seed_one_template(database_url: str) -> None:
    """A template to read when the database has none (a template path then answers 200, not 404)."""
    from sqlalchemy import create_engine, func, select

    from appfactory.config import sqlalchemy_url
    from appfactory.db.models import templates

    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(templates)).scalar_one() == 0:
                conn.execute(
                    templates.insert(),
                    {"name": "hotpath", "body": "Tell {{ audience }} about {{ topic }}.", "description": ""},
                )
    finally:
        engine.dispose()


def _silence_logs() -> None:
    """Request lines go to /dev/null: writing them is measured, a terminal is not."""
    null = os.open(os.devnull, os.O_WRONLY)
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_fd", None) is not None:
            handler._fd = null
        elif hasattr(handler, "setStream"):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)


def cpu_us_per_request(serve: Callable[[], bytes], requests: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            serve()
        best = min(best, (time.process_time() - started) * 1e6 / requests)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=HIT_PATH, help=f"request path and query (default {HIT_PATH})")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print the top functions by own time")
    parser.add_argument("--key", action="store_true", help="send an API key (Authorization: Bearer)")
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL to serve from (default: a throwaway SQLite file)"
    )
    args = parser.parse_args(argv)
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    namespace = f"hotpath-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="hotpath-") as folder:
        database_url = args.database_url or f"sqlite:///{folder}/hotpath.sqlite"
        serve = build(args.path, redis_url, namespace, database_url, with_key=args.key)
        try:
            figure = cpu_us_per_request(serve, args.requests, args.rounds)
            keyed = " with an API key" if args.key else ""
            rounds = f"min of {args.rounds} × {args.requests}"
            print(f"{args.path}{keyed}: {figure:.1f} µs CPU per request ({rounds})")
            if args.profile:
                profile = cProfile.Profile()
                profile.runcall(lambda: [serve() for _ in range(args.requests)])
                pstats.Stats(profile).sort_stats("tottime").print_stats(40)
        finally:
            delete_namespace(redis.Redis.from_url(redis_url), namespace)


if __name__ == "__main__":
    main()
