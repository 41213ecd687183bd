"""Server time the rate limiter adds per request on Redis: median X-Process-Time, limiter off vs on.

Run from the repository root with Redis at REDIS_URL (default redis://127.0.0.1:6379/0):
    python -m bench.ratelimit_overhead [--rounds 20] [--batch 50] [--path /api/v1/nothing]
Three gunicorns (2 workers each) run side by side and are measured in interleaved batches:
`off` (RATELIMIT_ENABLED=false), `on` (the service's limiter) and `stock` (Flask-Limiter's own
Redis storage and headers, which ask Redis a second time per request for the window).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn import Gunicorn  # noqa: E402


def stock_app():
    """The service with Flask-Limiter's stock Redis storage and header writing (for comparison)."""
    from appfactory import config, create_app
    from appfactory.redis.client import client_options

    settings = config.load(os.environ)
    return create_app(
        {
            "RATELIMIT_STORAGE_URI": settings["REDIS_URL"],
            "RATELIMIT_STORAGE_OPTIONS": {
                **client_options(settings),
                "key_prefix": f"{settings['CACHE_NAMESPACE']}:rl",
            },
        }
    )


def _server_ms(session: requests.Session, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        response = session.get(url, timeout=10)
        times.append(float(response.headers["X-Process-Time"].removesuffix("ms")))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--path", default="/api/v1/nothing")
    args = parser.parse_args()

    base = {
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "DATABASE_URL": f"sqlite:///{tempfile.mkdtemp()}/bench.db",
        "CACHE_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "LOG_LEVEL": "WARNING",
    }
    variants = {
        "off": Gunicorn({**base, "RATELIMIT_ENABLED": "false"}),
        "on": Gunicorn(base),
        "stock": Gunicorn(base, app="bench.ratelimit_overhead:stock_app()"),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    with ExitStack() as stack:
        sessions = {}
        for name, server in variants.items():
            stack.enter_context(server)
            sessions[name] = stack.enter_context(requests.Session())
            _server_ms(sessions[name], server.url + args.path, 20)  # warm up
        for _ in range(args.rounds):
            for name, server in variants.items():
                samples[name] += _server_ms(sessions[name], server.url + args.path, args.batch)

    off = statistics.median(samples["off"])
    print(f"GET {args.path}: {args.rounds * args.batch} requests per variant, X-Process-Time in ms")
    print("variant   median    p90   added (median)")
    for name, times in samples.items():
        median = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{name:<8} {median:7.3f} {p90:6.3f}   {median - off:+.3f}")


if __name__ == "__main__":
    main()
