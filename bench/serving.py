"""`python -m bench.serving`: what the serving model holds, gevent (the default) beside gthread.

Two measurements, against a fake OpenAI-compatible model server on 127.0.0.1 (tests/support/upstream.py):

- sustained: distinct uncached generations at a 20 ms model, 64 wrk connections, each worker class in
  turn over interleaved rounds: requests/s, p50/p99, non-2xx answers (after a public gateway
  benchmark's "sustained requests/s at a fixed model latency");
- burst: N concurrent distinct generations at a 5 s model on the default worker class and count: how
  many are answered, in how long, a cache HIT's and /health/live's round trips meanwhile, and the
  workers' RSS while the calls are in flight.

    python -m bench.serving                    # both, bursts of 300, 500 and 1000
    python -m bench.serving --bursts 300 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from bench import probes, wrk
from bench.environment import Environment, start_all, stop_all
from tests.support.gunicorn import Gunicorn
from tests.support.upstream import FakeModel

GENERATE = "/api/v1/ai/generate?prompt="
CLASSES = ("gevent", "gthread")


def sustained(rounds: int, seconds: int) -> dict[str, dict]:
    """Per worker class: the median over rounds of wrk's figures on distinct generations."""
    figures: dict[str, list[dict]] = {name: [] for name in CLASSES}
    with Environment() as env, FakeModel(delay=0.02) as model:
        servers = {
            name: Gunicorn(
                env.env(AI_PROVIDER="openai", AI_BASE_URL=model.url, GUNICORN_WORKER_CLASS=name), None
            )
            for name in CLASSES
        }
        start_all(servers)
        try:
            load = wrk.Load(connections=64, seconds=seconds)
            for n in range(rounds):
                for name in CLASSES[n % 2 :] + CLASSES[: n % 2]:  # interleaved: each starts in turn
                    unique = (uuid.uuid4().hex[:8], GENERATE)
                    figures[name].append(wrk.run(servers[name].url + GENERATE, load, unique=unique))
        finally:
            stop_all(servers)
    return {name: _median(runs) for name, runs in figures.items()}


def _median(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def burst(size: int) -> dict:
    """`size` concurrent distinct generations at a 5 s model on the default configuration."""
    with Environment() as env, FakeModel(delay=5.0) as model:
        server = Gunicorn(env.env(AI_PROVIDER="openai", AI_BASE_URL=model.url), None)
        start_all({"service": server})
        try:
            hit = f"{server.url}{GENERATE}bench-hit"
            requests.get(hit, timeout=30)
            model.reset()
            started = time.perf_counter()
            with ThreadPoolExecutor(size) as pool:
                futures = [pool.submit(_status, f"{server.url}{GENERATE}burst-{n}") for n in range(size)]
                time.sleep(2.5)
                in_flight = model.calls
                rss = probes.worker_rss_mb(server.process.pid)
                hit_ms = _round_trips(hit)
                live_ms = _round_trips(f"{server.url}/health/live")
                statuses = [future.result() for future in futures]
            elapsed = time.perf_counter() - started
        finally:
            stop_all({"service": server})
    return {
        "size": size,
        "answered": statuses.count(200),
        "other": sorted({status for status in statuses if status != 200}),
        "elapsed_s": elapsed,
        "model_calls_at_2_5_s": in_flight,
        "hit_ms": (statistics.median(hit_ms), max(hit_ms)),
        "live_ms": (statistics.median(live_ms), max(live_ms)),
        "worker_rss_mb": rss,
    }


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=60).status_code
    except requests.RequestException:
        return 0


def _round_trips(url: str, count: int = 20) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        _status(url)
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--bursts", type=int, nargs="*", default=[300, 500, 1000])
    args = parser.parse_args()
    if args.rounds:
        print("| worker class | req/s | p50 ms | p99 ms | non-2xx | socket errors |")
        print("|---|---|---|---|---|---|")
        for name, row in sustained(args.rounds, args.seconds).items():
            print(
                f"| {name} | {row['rps']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                f"{row['non_2xx']:.0f} | {row['socket_errors']:.0f} |"
            )
    for size in args.bursts:
        row = burst(size)
        print(
            f"burst {size}: {row['answered']} answered (others: {row['other']}) in {row['elapsed_s']:.2f} s; "
            f"{row['model_calls_at_2_5_s']} model calls in flight at 2.5 s; HIT median/max "
            f"{row['hit_ms'][0]:.1f}/{row['hit_ms'][1]:.1f} ms; /health/live {row['live_ms'][0]:.1f}/"
            f"{row['live_ms'][1]:.1f} ms; worker RSS {row['worker_rss_mb']} MiB"
        )


if __name__ == "__main__":
    main()
