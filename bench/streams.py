"""`python -m bench.streams`: how soon a streamed answer's first piece arrives, cached and live.

Against the service under gunicorn (the benchmark's environment) and a fake model server streaming its
answer word by word over `--model-s` seconds: sequential requests, each timed from sending to the first
piece's event, then to the end. Cases: a streamed HIT through the native endpoint and through /v1 (the
original pieces replayed from the cache), and a live stream (a MISS: the model's first piece passed on
as it comes). The non-streamed native HIT's whole round trip is the reference of the same run.

    python -m bench.streams --requests 200
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import requests

from bench.environment import Environment
from tests.support.gunicorn import Gunicorn
from tests.support.upstream import FakeModel

GENERATE = "/api/v1/ai/generate"
CHAT = "/v1/chat/completions"


def _first_and_whole(session: requests.Session, url: str, body: dict) -> tuple[float, float]:
    """Seconds to the first content event, and to the end of the stream."""
    started = time.perf_counter()
    first = None
    with session.post(url, json=body, stream=True, timeout=60) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith(b"data: ") and (b'"text"' in line or b'"content":"' in line):
                first = time.perf_counter() - started
    return first or float("nan"), time.perf_counter() - started


def _whole(session: requests.Session, url: str, body: dict) -> float:
    started = time.perf_counter()
    session.post(url, json=body, timeout=60).raise_for_status()
    return time.perf_counter() - started


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(len(ordered) * 0.9) - 1] * 1000,
    }


def measure(requests_per_case: int, model_s: float) -> dict[str, dict[str, float]]:
    words = "a streamed answer of about a dozen words to time its first piece"
    native = {"prompt": words, "stream": True}
    chat = {"model": "m1", "messages": [{"role": "user", "content": words}], "stream": True}
    with Environment() as env, FakeModel(delay=model_s) as model:
        server = Gunicorn(env.env(AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_MODEL="m1"), None)
        server.start()
        try:
            with requests.Session() as session:
                _first_and_whole(session, server.url + GENERATE, native)  # stored: the HITs below
                _first_and_whole(session, server.url + CHAT, chat)
                figures: dict[str, list[float]] = {
                    "native streamed HIT, first piece": [],
                    "/v1 streamed HIT, first piece": [],
                    "native HIT, whole JSON answer": [],
                }
                for _ in range(requests_per_case):
                    figures["native streamed HIT, first piece"].append(
                        _first_and_whole(session, server.url + GENERATE, native)[0]
                    )
                    figures["/v1 streamed HIT, first piece"].append(
                        _first_and_whole(session, server.url + CHAT, chat)[0]
                    )
                    plain = {k: v for k, v in native.items() if k != "stream"}
                    figures["native HIT, whole JSON answer"].append(
                        _whole(session, server.url + GENERATE, plain)
                    )
                live_first, live_whole = [], []
                for _ in range(max(3, requests_per_case // 40)):
                    body = {"prompt": f"{words} {uuid.uuid4().hex[:8]}", "stream": True}
                    first, whole = _first_and_whole(session, server.url + GENERATE, body)
                    live_first.append(first)
                    live_whole.append(whole)
                figures[f"native live stream (MISS, {model_s:g} s model), first piece"] = live_first
                figures[f"native live stream (MISS, {model_s:g} s model), whole"] = live_whole
        finally:
            server.stop()
    return {name: _summary(values) for name, values in figures.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per HIT case")
    parser.add_argument("--model-s", type=float, default=2.0, help="how long the model streams an answer")
    args = parser.parse_args(argv)
    print("| case | p50 ms | p90 ms |")
    print("|---|---:|---:|")
    for name, figure in measure(args.requests, args.model_s).items():
        print(f"| {name} | {figure['p50_ms']:.2f} | {figure['p90_ms']:.2f} |")


if __name__ == "__main__":
    main()
