"""Run every case against real gunicorns, Redis and PostgreSQL, interleaved over rounds."""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace

import requests

from appfactory import config
from bench import probes, wrk
from bench.environment import Environment, start_all, stop_all
from bench.plan import AI_PATH, CASES, REFERENCE_SERVERS, SERVICE_APP, Case, Plan
from tests.support.gunicorn import Gunicorn
from tests.support.upstream import FakeModel


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(plan: Plan) -> dict:
    """The whole benchmark; returns the raw figures."""
    started = time.time()
    results: dict = {"plan": asdict(plan), "machine": probes.machine(), "cases": {}}
    with Environment() as env:
        servers = {key: Gunicorn(env.env(), plan.workers, app) for key, app in REFERENCE_SERVERS.items()}
        servers["service"] = Gunicorn(env.env(), plan.workers, SERVICE_APP)
        say(f"starting {len(servers)} gunicorns ({plan.workers} workers each)")
        start_all(servers)
        try:
            results["settings"] = _settings(env.env(PORT="8000", WEB_CONCURRENCY=str(plan.workers)))
            cases = [replace(c, path=c.path.format(template_id=env.template_id)) for c in CASES]
            urls = {c.key: servers[c.server].url + c.path for c in cases}
            cases = [replace(c, headers=_headers(c, env)) for c in cases]
            results["cases"] = {c.key: _probe(c, urls[c.key]) for c in cases}
            ready = [c for c in cases if results["cases"][c.key]["status"] == "ok"]
            interleaved_rounds(
                plan, ready, urls, results["cases"], lambda case: cpu_sample(servers[case.server], env)
            )
            results["server_time"] = _server_times(plan, ready, urls)
            results["pg_connections"] = _pg_connections(plan, env, results, urls)
            results["rss_mb"] = {key: probes.worker_rss_mb(s.process.pid) for key, s in servers.items()}
        finally:
            stop_all(servers)
        results["fan_out"] = _fan_out(plan, env, results["cases"]["ai_hit"]["status"] == "ok")
    results["elapsed_s"] = round(time.time() - started, 1)
    return results


def _settings(environ: dict[str, str]) -> dict:
    settings = config.load(environ)
    keys = (
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "GUNICORN_REUSE_PORT",
        "DB_POOL_SIZE",
        "DB_MAX_OVERFLOW",
        "LOG_LEVEL",
    )
    return {key: settings[key] for key in keys} | {"RATE_LIMIT_PER_MINUTE": settings["RATE_LIMIT_PER_MINUTE"]}


def _headers(case: Case, env: Environment) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.api_key}"} if case.authenticated else {}


def _probe(case: Case, url: str) -> dict:
    """One request first: 404 means the endpoint is not served (yet); warm a cache-hit case."""
    target = url + f"probe-{uuid.uuid4().hex[:8]}" if case.unique else url
    entry = {"label": case.label, "server": case.server, "path": case.path, "rounds": []}
    try:
        response = requests.get(target, headers=case.headers, timeout=30)
        if case.key.startswith("ai_hit") and response.ok:
            response = requests.get(target, headers=case.headers, timeout=30)
    except requests.RequestException as exc:
        return entry | {"status": f"error: {type(exc).__name__}"}
    entry["x_cache"] = response.headers.get("X-Cache")
    if response.status_code == 404:
        return entry | {"status": "not available"}
    if not response.ok:
        return entry | {"status": f"error: HTTP {response.status_code}"}
    return entry | {"status": "ok"}


def _load(plan: Plan, seconds: int, connections: int | None = None) -> wrk.Load:
    return wrk.Load(plan.wrk_threads, connections or plan.wrk_connections, seconds)


def _run_case(case: Case, url: str, load: wrk.Load) -> dict:
    if not case.unique:
        return wrk.run(url, load, headers=case.headers, body=case.body)
    nonce = (uuid.uuid4().hex[:8], case.path)
    return wrk.run(url.removesuffix(case.path) + "/", load, nonce, headers=case.headers)


def cpu_sample(server: Gunicorn, env: Environment) -> tuple[dict[int, float], float]:
    """The server's workers' CPU seconds by pid, and Redis's: taken before and after each run."""
    return probes.worker_cpu_s(server.process.pid), probes.redis_cpu_s(env.redis)


def _cpu_per_request(before: tuple, after: tuple, requests_done: int) -> dict:
    """Worker and Redis CPU µs per request over one wrk run; None when a worker was replaced meanwhile."""
    (workers_before, redis_before), (workers_after, redis_after) = before, after
    if not requests_done or set(workers_before) != set(workers_after):
        return {"worker_cpu_us": None, "redis_cpu_us": None}
    worker_s = sum(workers_after.values()) - sum(workers_before.values())
    return {
        "worker_cpu_us": worker_s * 1e6 / requests_done,
        "redis_cpu_us": (redis_after - redis_before) * 1e6 / requests_done,
    }


def interleaved_rounds(plan: Plan, cases: list[Case], urls: dict[str, str], out: dict, cpu: Callable) -> None:
    """A B C ... A B C ...: machine drift hits every case alike; each round starts one case later.

    Each run also records the CPU the workers and Redis spent per request: on a shared machine that
    figure moves far less than requests/s, which depend on what else the cores are doing.
    """
    if plan.warmup_s:
        say(f"warming up {len(cases)} cases")
        for case in cases:
            _run_case(case, urls[case.key], _load(plan, plan.warmup_s))
    for n in range(plan.rounds):
        order = cases[n % len(cases) :] + cases[: n % len(cases)] if cases else []
        say(f"round {n + 1}/{plan.rounds}")
        for case in order:
            before = cpu(case)
            figures = _run_case(case, urls[case.key], _load(plan, plan.seconds))
            figures |= _cpu_per_request(before, cpu(case), figures["requests"])
            out[case.key]["rounds"].append(figures)
    for case in cases:
        out[case.key]["median"] = _medians(out[case.key]["rounds"])


def _medians(rounds: list[dict]) -> dict:
    figures = {key: statistics.median(r[key] for r in rounds) for key in ("rps", "p50_ms", "p99_ms")}
    for key in ("worker_cpu_us", "redis_cpu_us"):
        known = [r[key] for r in rounds if r.get(key) is not None]
        figures[key] = statistics.median(known) if known else None
    figures["non_2xx"] = sum(r["non_2xx"] for r in rounds)
    figures["socket_errors"] = sum(r["socket_errors"] for r in rounds)
    return figures


def _server_times(plan: Plan, cases: list[Case], urls: dict[str, str]) -> dict:
    say(f"server time: {plan.server_time_requests} sequential requests per service case")
    return {
        case.key: probes.server_time(
            urls[case.key] + ("server-time" if case.unique else ""),
            plan.server_time_requests,
            unique=case.unique,
            headers=case.headers,
        )
        for case in cases
        if case.server == "service"
    }


def _pg_connections(plan: Plan, env: Environment, results: dict, urls: dict[str, str]) -> dict | None:
    if results["cases"]["template_by_id"]["status"] != "ok":
        return None
    say(f"database connections under {plan.pg_clients} clients")
    settings = results["settings"]
    limit = settings["WEB_CONCURRENCY"] * (settings["DB_POOL_SIZE"] + settings["DB_MAX_OVERFLOW"])
    load = _load(plan, plan.pg_seconds, plan.pg_clients)
    return probes.held_connections(env.database, urls["template_by_id"], load, limit)


def _fan_out(plan: Plan, env: Environment, ai_served: bool) -> dict | None:
    """Identical uncached requests against a slow OpenAI-compatible upstream that counts calls."""
    if not ai_served:
        return None
    say(f"fan-out: {plan.fanout_clients} identical uncached requests, model {plan.fanout_latency_s}s")
    with FakeModel(delay=plan.fanout_latency_s) as upstream:
        environ = env.env(AI_PROVIDER="openai", AI_BASE_URL=upstream.url, AI_MODEL="bench-model")
        with Gunicorn(environ, plan.workers) as server:
            url = f"{server.url}{AI_PATH}fan-out-{uuid.uuid4().hex[:8]}"
            return probes.fan_out(url, plan.fanout_clients, upstream)
