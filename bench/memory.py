"""`python -m bench.memory [APP ...] [--env NAME=VALUE]`: gunicorn worker memory after the quick plan's load.

The worker RSS figure of `python -m bench --quick` for one server at a time, in ~15 s: the benchmark's
database, Redis namespace and gunicorn, the quick plan's load on the app's cases (one second of wrk and
sequential requests per case, then a second of wrk -c200), then each worker's VmRSS split into anonymous
pages (Python objects, malloc) and file-backed pages (shared libraries and what loading them touched).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import replace

import requests

from bench import probes, wrk
from bench.environment import Environment
from bench.plan import CASES, QUICK, REFERENCE_SERVERS, SERVICE_APP, Case
from tests.support.gunicorn import Gunicorn

# app -> the server name its cases carry in bench.plan
_SERVERS = {app: key for key, app in REFERENCE_SERVERS.items()} | {SERVICE_APP: "service"}


def _cases(app: str, template_id: int) -> list[Case]:
    return [
        replace(c, path=c.path.format(template_id=template_id)) for c in CASES if c.server == _SERVERS[app]
    ]


def _load(base: str, cases: list[Case]) -> int:
    """What the quick plan sends a server; returns wrk's request count."""
    load = wrk.Load(QUICK.wrk_threads, QUICK.wrk_connections, QUICK.seconds)
    sent = 0
    for case in cases:
        if case.unique:
            sent += wrk.run(base + "/", load, (uuid.uuid4().hex[:8], case.path))["requests"]
            probes.server_time(base + case.path + "server-time", QUICK.server_time_requests, unique=True)
            continue
        requests.get(base + case.path, timeout=30)  # a cache-hit case is a HIT from then on
        sent += wrk.run(base + case.path, load)["requests"]
        probes.server_time(base + case.path, QUICK.server_time_requests)
    busiest = next((case for case in cases if case.key == "template_by_id"), cases[0])
    many = wrk.Load(QUICK.wrk_threads, QUICK.pg_clients, QUICK.pg_seconds)
    return sent + wrk.run(base + busiest.path, many)["requests"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("apps", nargs="*", default=[SERVICE_APP], help=f"default: {SERVICE_APP}")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="server environment")
    args = parser.parse_args(argv)
    unknown = [app for app in args.apps if app not in _SERVERS]
    if unknown:
        parser.error(f"unknown app {unknown[0]!r}: one of {', '.join(_SERVERS)}")
    if not wrk.available():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    extra = dict(item.split("=", 1) for item in args.env)
    with Environment() as env:
        for app in args.apps:
            cases = _cases(app, env.template_id)
            with Gunicorn(env.env(**extra), QUICK.workers, app) as server:
                sent = _load(server.url, cases)
                print(f"{app} after {sent} requests (wrk), MiB:")
                for pid in probes.workers(server.process.pid):
                    sizes = probes.memory_mb(pid)
                    print(f"  worker {pid}: " + ", ".join(f"{name} {size}" for name, size in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
