"""`python -m bench.compare`: req/s and CPU per request of server variants under gunicorn, interleaved.

Each variant is one argument, `"NAME=SERVER:PATH [VAR=VALUE ...]"`: a server of the benchmark
(`wsgi`, `flask`, `flask_redis`, `plain` or `service`), the path wrk loads (`{template_id}` is the
seeded template), and environment variables for that server alone (`GUNICORN_THREADS=2`,
`LOG_LEVEL=WARNING`, ...); `BODY={...}` (JSON without spaces) makes every request a POST of it.
Every variant runs as its own gunicorn in one benchmark environment; the rounds are interleaved
(each starts one variant later) and each figure is the median over rounds, req/s also as the median
of per-round ratios to the first variant. For a setting's effect, not a release's: the full
benchmark (`python -m bench`) is what BENCHMARKS.md reports.

    python -m bench.compare "flask=flask:/hello" \\
        "hit=service:/api/v1/ai/generate?prompt=x" \\
        "hit, 2 threads=service:/api/v1/ai/generate?prompt=x GUNICORN_THREADS=2"
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field, replace

from bench.environment import Environment, start_all, stop_all
from bench.plan import QUICK, REFERENCE_SERVERS, SERVICE_APP, Case
from bench.run import cpu_sample, interleaved_rounds
from tests.support.gunicorn import Gunicorn

SERVERS = {**REFERENCE_SERVERS, "service": SERVICE_APP}


@dataclass(frozen=True)
class Variant:
    """One gunicorn serving one path, with its own environment."""

    name: str
    server: str
    path: str
    env: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # every request a POST of this JSON


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
    body = env.pop("BODY", None)  # not the server's: what wrk POSTs
    return Variant(name.strip(), server, path, env, body)


def compare(variants: list[Variant], rounds: int, seconds: int, connections: int) -> dict[str, dict]:
    """Run the variants side by side, as `python -m bench` runs its cases; the figures by variant name."""
    plan = replace(
        QUICK, name="compare", rounds=rounds, seconds=seconds, warmup_s=1, wrk_connections=connections
    )
    cases = [Case(v.name, v.name, v.name, v.path, body=v.body) for v in variants]
    figures: dict[str, dict] = {v.name: {"rounds": []} for v in variants}
    with Environment() as env:
        servers = {v.name: Gunicorn(env.env(**v.env), plan.workers, SERVERS[v.server]) for v in variants}
        start_all(servers)
        try:
            urls = {
                v.name: servers[v.name].url + v.path.format(template_id=env.template_id) for v in variants
            }
            interleaved_rounds(plan, cases, urls, figures, lambda case: cpu_sample(servers[case.key], env))
        finally:
            stop_all(servers)
    return figures


def report(figures: dict[str, dict]) -> list[str]:
    first = next(iter(figures.values()))["rounds"]
    lines = [
        "| variant | req/s | vs first (per round) | workers' CPU µs/request | Redis CPU µs/request "
        "| req/s per round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, entry in figures.items():
        pairs = zip(entry["rounds"], first, strict=True)
        ratio = statistics.median(mine["rps"] / base["rps"] for mine, base in pairs if base["rps"])
        median = entry["median"]
        rounds = ", ".join(f"{r['rps']:,.0f}" for r in entry["rounds"])
        lines.append(
            f"| {name} | {median['rps']:,.0f} | {ratio:.2f}× | {_us(median['worker_cpu_us'])} "
            f"| {_us(median['redis_cpu_us'])} | {rounds} |"
        )
    return lines


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"  # None: a worker was replaced during every run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help='"NAME=SERVER:PATH [VAR=VALUE ...]"')
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=QUICK.wrk_connections)
    args = parser.parse_args(argv)
    try:
        variants = [parse(text) for text in args.variants]
    except ValueError as exc:
        parser.error(str(exc))
    if len({v.name for v in variants}) != len(variants):
        parser.error("variant names must differ")
    print("\n".join(report(compare(variants, args.rounds, args.seconds, args.connections))))


if __name__ == "__main__":
    main()
