"""`python -m bench.compare`: req/s and CPU per request of server variants under gunicorn, interleaved.

Each variant is one argument, `"NAME=SERVER:PATH [VAR=VALUE ...]"`: a server of the benchmark
(`wsgi`, `flask`, `flask_redis`, `plain` or `service`), the path wrk loads (`{template_id}` is the
seeded template), and environment variables for that server alone (`GUNICORN_THREADS=2`,
`LOG_LEVEL=WARNING`, ...). Every variant runs as its own gunicorn in one benchmark environment; the
rounds are interleaved (each starts one variant later) and each figure is the median over rounds, req/s
also as the median of per-round ratios to the first variant. For a setting's effect, not a release's:
the full benchmark (`python -m bench`) is what BENCHMARKS.md reports.

    python -m bench.compare "flask=flask:/hello" \\
        "hit=service:/api/v1/ai/generate?prompt=x" \\
        "hit, 2 threads=service:/api/v1/ai/generate?prompt=x GUNICORN_THREADS=2"
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field

import requests

from bench import probes, wrk
from bench.environment import Environment, start_all, stop_all
from bench.plan import REFERENCE_SERVERS, SERVICE_APP
from tests.support.gunicorn import Gunicorn

SERVERS = {**REFERENCE_SERVERS, "service": SERVICE_APP}


@dataclass(frozen=True)
class Variant:
    """One gunicorn serving one path, with its own environment."""

    name: str
    server: str
    path: str
    env: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> Variant:
    """`NAME=SERVER:PATH [VAR=VALUE ...]` → Variant; ValueError with the reason otherwise."""
    name, _, rest = text.partition("=")
    target, *settings = rest.split() or [""]
    server, _, path = target.partition(":")
    if not name.strip() or server not in SERVERS or not path.startswith("/"):
        raise ValueError(
            f"expected NAME=SERVER:/PATH [VAR=VALUE ...] with SERVER in {sorted(SERVERS)}: {text!r}"
        )
    env = dict(setting.split("=", 1) for setting in settings if "=" in setting)
    if len(env) != len(settings):
        raise ValueError(f"settings must be VAR=VALUE: {text!r}")
    return Variant(name.strip(), server, path, env)


def compare(variants: list[Variant], rounds: int, seconds: int, load: wrk.Load) -> dict[str, dict]:
    """Run the variants side by side; per variant the per-round req/s and CPU µs per request."""
    figures: dict[str, dict] = {v.name: {"rps": [], "cpu_us": []} for v in variants}
    with Environment() as env:
        servers = {v.name: Gunicorn(env.env(**v.env), app=SERVERS[v.server]) for v in variants}
        start_all(servers)
        try:
            urls = {
                v.name: servers[v.name].url + v.path.format(template_id=env.template_id) for v in variants
            }
            for variant in variants:  # a cache HIT path is warm from its first request on
                requests.get(urls[variant.name], timeout=30)
                wrk.run(urls[variant.name], wrk.Load(load.threads, load.connections, 1))
            for n in range(rounds):
                for variant in variants[n % len(variants) :] + variants[: n % len(variants)]:
                    pid = servers[variant.name].process.pid
                    before = sum(probes.worker_cpu_s(pid).values())
                    run = wrk.run(urls[variant.name], wrk.Load(load.threads, load.connections, seconds))
                    spent = sum(probes.worker_cpu_s(pid).values()) - before
                    figures[variant.name]["rps"].append(run["rps"])
                    figures[variant.name]["cpu_us"].append(spent / max(run["requests"], 1) * 1e6)
        finally:
            stop_all(servers)
    return figures


def report(figures: dict[str, dict]) -> list[str]:
    first = next(iter(figures.values()))["rps"]
    lines = [
        "| variant | req/s | vs first (per round) | worker CPU µs/request | req/s per round |",
        "|---|---:|---:|---:|---|",
    ]
    for name, values in figures.items():
        ratio = statistics.median(
            mine / base for mine, base in zip(values["rps"], first, strict=True) if base
        )
        rounds = ", ".join(f"{rps:,.0f}" for rps in values["rps"])
        lines.append(
            f"| {name} | {statistics.median(values['rps']):,.0f} | {ratio:.2f}× "
            f"| {statistics.median(values['cpu_us']):,.0f} | {rounds} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help='"NAME=SERVER:PATH [VAR=VALUE ...]"')
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=wrk.Load().connections)
    args = parser.parse_args(argv)
    try:
        variants = [parse(text) for text in args.variants]
    except ValueError as exc:
        parser.error(str(exc))
    if len({v.name for v in variants}) != len(variants):
        parser.error("variant names must differ")
    figures = compare(variants, args.rounds, args.seconds, wrk.Load(connections=args.connections))
    print("\n".join(report(figures)))


if __name__ == "__main__":
    main()
