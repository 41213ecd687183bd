"""`python -m bench.profile [CASE ...]`: where a request's time goes, sampled with py-spy under wrk load.

Each case's server runs under the real gunicorn with one worker while wrk keeps it busy; py-spy
samples that worker twice: `--gil` (CPU: what bounds a worker's throughput) and wall time (also
what threads wait on). Prints the share of samples whose stack passes through each layer.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench import wrk
from bench.environment import Environment
from bench.plan import CASES, REFERENCE_SERVERS, SERVICE_APP
from bench.probes import workers
from tests.support.gunicorn import Gunicorn

Stack = list[str]


def _any(*needles: str) -> Callable[[Stack], bool]:
    return lambda stack: any(needle in frame for frame in stack for needle in needles)


# Inclusive layers: a sample counts in every layer its stack passes through.
LAYERS: tuple[tuple[str, Callable[[Stack], bool]], ...] = (
    ("outside Flask: gunicorn HTTP parsing, sockets, poller", lambda s: not _any("Flask.wsgi_app")(s)),
    ("inside Flask.wsgi_app (everything the app does)", _any("Flask.wsgi_app")),
    ("  request context push/pop, routing", _any("RequestContext.push", "RequestContext.pop")),
    ("  before_request hooks (incl. rate limiter)", _any("preprocess_request")),
    ("  rate limiter (Flask-Limiter, limits, its Redis calls)", _any("flask_limiter/")),
    ("  view function", _any("Flask.dispatch_request")),
    ("  Flask-Caching", _any("flask_caching/")),
    ("  SQLAlchemy (incl. driver)", _any("sqlalchemy/")),
    ("    statement execution (psycopg2 round trip)", _any("do_execute (sqlalchemy")),
    ("    pool checkout/checkin (incl. pre-ping)", _any("sqlalchemy/pool/")),
    ("  Redis client (any caller)", _any("redis/")),
    ("  JSON encoding of the response", _any("flask/json/", "json/encoder.py")),
    ("  make_response / werkzeug Response", _any("Flask.make_response")),
    ("  after_request hooks (headers, timing)", _any("Flask.process_response")),
    ("  logging (records, formatting, write)", _any("logging/__init__.py", "pythonjsonlogger/")),
    ("  teardown (connection back to pool)", _any("do_teardown_appcontext", "do_teardown_request")),
    ("  thread start/join (health probe)", _any("Thread.start", "Thread.join")),
)


def parse(raw: str) -> list[tuple[Stack, int]]:
    """py-spy's raw (collapsed) output: 'frame;frame;... count' per line."""
    stacks = []
    for line in raw.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def summarise(stacks: list[tuple[Stack, int]]) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Share of samples per layer, and the leaf functions with the most samples."""
    total = sum(count for _, count in stacks) or 1
    layers = {name: 100.0 * sum(c for s, c in stacks if match(s)) / total for name, match in LAYERS}
    leaves: Counter[str] = Counter()
    for stack, count in stacks:
        leaves[stack[-1]] += count
    return layers, [(leaf, 100.0 * n / total) for leaf, n in leaves.most_common(12)]


def _record(pid: int, seconds: int, gil: bool) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.NamedTemporaryFile(suffix=".raw") as out:
        command = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200"]
        command += ["--format", "raw", "--output", out.name] + (["--gil"] if gil else [])
        for _ in range(3):  # py-spy sometimes fails to attach on a first try
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"py-spy failed: {done.stderr.strip()}")
        return Path(out.name).read_text()


def profile(url: str, pid: int, seconds: int, keep: Path | None = None) -> dict[str, tuple[dict, list]]:
    """Drive `url` with wrk while py-spy samples the worker, CPU then wall time; `keep` saves raw stacks."""
    load = wrk.Load(1, 8, 2 * seconds + 3)
    figures: dict = {}
    driver = threading.Thread(target=lambda: figures.update(wrk.run(url, load)))
    driver.start()
    time.sleep(1)
    result = {}
    for mode in ("cpu", "wall"):
        raw = _record(pid, seconds, mode == "cpu")
        if keep:
            keep.with_name(f"{keep.name}-{mode}.raw").write_text(raw)
        result[mode] = summarise(parse(raw))
    driver.join()
    result["rps"] = figures.get("rps", 0.0)
    return result


def _print(key: str, result: dict) -> None:
    print(f"\n## {key}: {result['rps']:.0f} req/s with one worker under profiling")
    cpu, wall = result["cpu"], result["wall"]
    print(f"{'layer':58} {'CPU %':>7} {'wall %':>7}")
    for name, _ in LAYERS:
        print(f"{name:58} {cpu[0][name]:7.1f} {wall[0][name]:7.1f}")
    print("top CPU leaf frames:")
    for leaf, share in cpu[1]:
        print(f"  {share:5.1f}%  {leaf}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("cases", nargs="*", default=["flask", "plain", "live", "template_by_id", "health"])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--raw", type=Path, help="folder to keep py-spy's raw stacks in (for flame graphs)")
    args = parser.parse_args(argv)
    cases = {case.key: case for case in CASES}
    if args.raw:
        args.raw.mkdir(parents=True, exist_ok=True)
    with Environment() as env:
        for key in args.cases:
            case = replace(cases[key], path=cases[key].path.format(template_id=env.template_id))
            app = REFERENCE_SERVERS.get(case.server, SERVICE_APP)
            with Gunicorn(env.env(), 1, app) as server:
                pid = workers(server.process.pid)[0]
                keep = args.raw / key if args.raw else None
                _print(key, profile(server.url + case.path, pid, args.seconds, keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
