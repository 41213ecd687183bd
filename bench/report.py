"""Write the figures: raw JSON, a PNG chart and the BENCHMARKS.md table."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

NAME = "BENCHMARKS"
REFERENCES = ("flask", "wsgi", "plain", "flask_redis")


def write(results: dict, out: Path) -> list[Path]:
    """Add ratios, then write BENCHMARKS.json, BENCHMARKS.png and BENCHMARKS.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results.setdefault("generated_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    results.setdefault("software", _software())
    _add_ratios(results["cases"])
    paths = [out / f"{NAME}.json", out / f"{NAME}.png", out / f"{NAME}.md"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    _chart(results, paths[1])
    paths[2].write_text(markdown(results))
    return paths


def _software() -> dict:
    def output(*command: str) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except OSError:
            return ""
        return (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""

    return {
        "python": platform.python_version(),
        "wrk": " ".join(output("wrk", "-v").split()[:2]),
        "commit": output("git", "rev-parse", "--short", "HEAD"),
    }


def _add_ratios(cases: dict) -> None:
    """Each case against every reference: the median of per-round ratios (same-round pairs)."""
    for entry in cases.values():
        if "median" not in entry:
            continue
        entry["ratios"] = {}
        for ref in REFERENCES:
            base = cases.get(ref, {}).get("rounds") or []
            if len(base) != len(entry["rounds"]):
                continue
            entry["ratios"][ref] = {
                key: _median_ratio([r[key] for r in entry["rounds"]], [b[key] for b in base])
                for key in ("rps", "p50_ms", "p99_ms")
            }


def _median_ratio(values: list[float], bases: list[float]) -> float | None:
    ratios = [value / base for value, base in zip(values, bases, strict=True) if base]
    return statistics.median(ratios) if ratios else None


def _measured(results: dict) -> list[tuple[str, dict]]:
    return [(key, entry) for key, entry in results["cases"].items() if "median" in entry]


def _chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    measured = _measured(results)
    labels = [entry["label"] for _, entry in measured]
    positions = range(len(measured))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(measured) + 1.8), sharey=True)
    left.barh(positions, [e["median"]["rps"] for _, e in measured], color="#4c72b0")
    left.set_xlabel("requests/s (median of rounds)")
    # At most five ticks, written 12,500 (the default ticks of a five-digit axis ran into each other).
    left.xaxis.set_major_locator(MaxNLocator(nbins=5))
    left.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    left.set_yticks(list(positions), labels)
    left.invert_yaxis()
    height = 0.4
    right.barh([p - height / 2 for p in positions], [e["median"]["p50_ms"] for _, e in measured], height)
    right.barh([p + height / 2 for p in positions], [e["median"]["p99_ms"] for _, e in measured], height)
    right.set_xscale("log")
    # Plain numbers at 1, 2, 5 of each decade: the minor ticks' 2×10^0 3×10^0 ... labels overlapped.
    right.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    right.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel("latency, ms (log scale)")
    right.legend(["p50", "p99"], loc="best")
    plan = results["plan"]
    fig.suptitle(
        f"wrk -t{plan['wrk_threads']} -c{plan['wrk_connections']}, gunicorn {plan['workers']} workers, "
        f"{results['generated_at']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def _ratio(entry: dict, ref: str, key: str) -> str:
    value = entry.get("ratios", {}).get(ref, {}).get(key)
    return "n/a" if value is None else f"{value:.2f}×"


def _results_table(results: dict) -> list[str]:
    lines = [
        "| case | path | req/s | vs Flask | vs WSGI | p50 ms | vs Flask | vs WSGI | p99 ms | vs Flask "
        "| vs WSGI | non-2xx / socket errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["cases"].values():
        path = f"`{entry['server']}:{entry['path']}`"
        median = entry.get("median")
        if not median:
            lines.append(f"| {entry['label']} | {path} | {entry['status']} |" + " |" * 9)
            continue
        row = [entry["label"], path]
        for key, digits in (("rps", 0), ("p50_ms", 2), ("p99_ms", 2)):
            row += [_num(median[key], digits), _ratio(entry, "flask", key), _ratio(entry, "wsgi", key)]
        row.append(f"{median['non_2xx']} / {median['socket_errors']}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _against_references(results: dict) -> list[str]:
    """The cache HIT's req/s against the two references the table has no column for."""
    hit = results["cases"].get("ai_hit", {})
    lines = []
    for ref, name in (("plain", "the plain assembly"), ("flask_redis", "bare Flask + one Redis GET")):
        ratio = hit.get("ratios", {}).get(ref, {}).get("rps")
        base = results["cases"].get(ref, {}).get("median")
        if ratio is None or not base or not hit.get("median"):
            continue
        lines.append(
            f"- Cache HIT req/s against {name}: {ratio:.2f}× (median of the per-round ratios; the "
            f"medians above give {hit['median']['rps'] / base['rps']:.2f}×)."
        )
    keyed = results["cases"].get("ai_hit_key", {})
    if hit.get("median") and keyed.get("median"):
        ratios = [
            mine["rps"] / theirs["rps"]
            for mine, theirs in zip(keyed["rounds"], hit["rounds"], strict=False)
            if theirs["rps"]
        ]
        lines.append(
            f"- Cache HIT with an API key against the anonymous HIT: {statistics.median(ratios):.2f}× "
            f"(median of the per-round ratios; the medians above give "
            f"{keyed['median']['rps'] / hit['median']['rps']:.2f}×)."
        )
    return [*lines, ""] if lines else []


def _cpu_table(results: dict) -> list[str]:
    """CPU per request: the figure a shared machine disturbs least."""
    lines = [
        "| case | workers' CPU µs/request | Redis CPU µs/request | together | vs Flask (lower is better) |",
        "|---|---:|---:|---:|---:|",
    ]
    flask_rounds = results["cases"].get("flask", {}).get("rounds") or []
    for entry in results["cases"].values():
        median = entry.get("median")
        if not median or median.get("worker_cpu_us") is None:
            continue
        together = median["worker_cpu_us"] + (median.get("redis_cpu_us") or 0.0)
        ratios = [
            _cpu_of(mine) / _cpu_of(base)
            for mine, base in zip(entry["rounds"], flask_rounds, strict=False)
            if _cpu_of(mine) and _cpu_of(base)
        ]
        ratio = f"{statistics.median(ratios):.2f}×" if ratios else "n/a"
        lines.append(
            f"| {entry['label']} | {median['worker_cpu_us']:,.0f} | {median.get('redis_cpu_us') or 0:,.1f} "
            f"| {together:,.0f} | {ratio} |"
        )
    return lines


def _cpu_of(figures: dict) -> float | None:
    if figures.get("worker_cpu_us") is None:
        return None
    return figures["worker_cpu_us"] + (figures.get("redis_cpu_us") or 0.0)


def _server_time_table(results: dict) -> list[str]:
    rows = results.get("server_time") or {}
    if not rows:
        return ["n/a: no service case answered."]
    lines = [
        "| case | requests | server p50 ms | server p99 ms | round trip p50 ms | round trip p99 ms "
        "| X-Cache |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in rows.items():
        caches = ", ".join(f"{k}: {v}" for k, v in row["x_cache"].items())
        lines.append(
            f"| {results['cases'][key]['label']} | {row['requests']} | {_num(row['server_p50_ms'], 3)} "
            f"| {_num(row['server_p99_ms'], 3)} | {_num(row['client_p50_ms'], 3)} "
            f"| {_num(row['client_p99_ms'], 3)} | {caches} |"
        )
    return lines


def _extras(results: dict) -> list[str]:
    lines = ["## Upstream calls for identical uncached requests", ""]
    fan = results.get("fan_out")
    if fan is None:
        lines.append("n/a: the service does not serve `/api/v1/ai/generate` yet.")
    else:
        lines.append(
            f"{fan['clients']} concurrent identical requests for one uncached prompt, upstream model "
            f"latency {fan['model_latency_s']} s: **{fan['upstream_calls']} upstream call(s)**, all answered "
            f"in {fan['wall_s']} s; statuses {fan['statuses']}, X-Cache {fan['x_cache']}."
        )
    lines += ["", "## PostgreSQL connections under many clients", ""]
    pg = results.get("pg_connections")
    if pg is None:
        lines.append("n/a: the template-by-id case did not answer.")
    else:
        lines.append(
            f"wrk with {pg['clients']} connections for {pg['seconds']} s on the template-by-id case "
            f"({_num(pg['rps'], 0)} req/s): the bench database's sessions in `pg_stat_activity` peaked at "
            f"**{pg['held_max']}** (median {pg['held_median']}, {pg['samples']} samples), against a "
            f"configured ceiling of workers × (DB_POOL_SIZE + DB_MAX_OVERFLOW) = {pg['limit']}; "
            f"non-2xx {pg['non_2xx']}, socket errors {pg['socket_errors']}."
        )
    lines += ["", "## Worker memory (RSS after the run)", "", "| server | workers' RSS, MiB |", "|---|---|"]
    for key, sizes in (results.get("rss_mb") or {}).items():
        lines.append(f"| {key} | {', '.join(f'{s:.1f}' for s in sizes) or 'n/a'} |")
    return lines


# How connections reach the workers, by GUNICORN_REUSE_PORT.
_LISTENING = {
    True: "a listening socket per worker (GUNICORN_REUSE_PORT=true: wrk's keep-alive connections spread "
    "over the workers; see docs/performance.md)",
    False: "one listening socket shared by the workers",
}


def _method(results: dict) -> list[str]:
    plan, settings = results["plan"], results.get("settings", {})
    machine = results["machine"]
    return [
        "## Method",
        "",
        f"- One command: `python -m bench` (this file: the `{plan['name']}` plan, "
        f"{results['elapsed_s']} s). `python -m bench --quick` is the smoke test the suite runs.",
        f"- Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}; Python "
        f"{results['software']['python']}, {results['software']['wrk']}, commit "
        f"{results['software']['commit']}.",
        "- Every server is the real `gunicorn -c gunicorn.conf.py <app>`, with `PYTHONOPTIMIZE=2` as the "
        "Dockerfile runs it, with the same settings: "
        f"{settings.get('WEB_CONCURRENCY')} workers × {settings.get('GUNICORN_THREADS')} gthread threads, "
        f"{_LISTENING[bool(settings.get('GUNICORN_REUSE_PORT'))]}. "
        "The reference apps (`bench/apps/`) run under the same file in the same run: a bare WSGI "
        "callable (the ceiling), a bare Flask route, the same route making one Redis `GET` (the floor for "
        "any per-request Redis call, which an exact rate limit across workers needs), and the plain "
        "assembly of the service's libraries "
        "with their defaults (Flask-Limiter on Redis with headers, a Flask-Caching RedisCache `@cached` "
        "route, a python-json-logger line per request).",
        "- The service runs on a fresh PostgreSQL database (migrated, 20 templates seeded) and the "
        "machine's Redis under a key namespace of the run's own, deleted at the end. The rate limiter "
        f"stays on with Redis but at {settings.get('RATE_LIMIT_PER_MINUTE')}/minute, so it costs what it "
        "costs and never answers 429; the same for the plain assembly. The local model answers in 0 ms "
        "(AI_LOCAL_LATENCY_MS=0), so the uncached case measures the whole miss path, not a sleep; its "
        "wrk script asks a prompt never asked before on every request.",
        f"- Load: `wrk -t{plan['wrk_threads']} -c{plan['wrk_connections']} -d{plan['seconds']}s` with "
        "`bench/report.lua` (p50/p99 from wrk's latency histogram in its `done` callback). The machine "
        "has 2 cores shared by wrk and gunicorn: one wrk thread takes at most one core and leaves the "
        f"other to the {settings.get('WEB_CONCURRENCY')} workers; "
        f"{plan['wrk_connections']} connections keep every one of the "
        f"{(settings.get('WEB_CONCURRENCY') or 0) * (settings.get('GUNICORN_THREADS') or 0)} server "
        "threads busy without a long accept queue. Under saturation latency is mostly queueing "
        "(p50 ≈ connections ÷ req/s), so the server-time table is the unqueued measure.",
        f"- Cases are interleaved, A B C … A B C …, over {plan['rounds']} round(s) of {plan['seconds']} s "
        "each (each round starts one case later), after a warm-up of "
        f"{plan['warmup_s']} s per case; the table shows the median of the rounds. A case whose "
        "endpoint answers 404 is reported as not available.",
        f"- Server time: {plan['server_time_requests']} sequential requests per service case over one "
        "keep-alive `http.client` connection, reading `X-Process-Time`.",
        f"- Fan-out: the service with AI_PROVIDER=openai against a counting OpenAI-compatible server on "
        f"127.0.0.1 that answers after {plan['fanout_latency_s']} s; {plan['fanout_clients']} threads "
        "connect first (`http.client`), then send the same uncached prompt at once; the time runs from "
        "their release to the last answer.",
        f"- Connections: `wrk -c{plan['pg_clients']}` on the template-by-id case for {plan['pg_seconds']} s "
        "while `pg_stat_activity` is sampled every 100 ms for the bench database (application_name aigen).",
        "- Memory: VmRSS of each gunicorn worker (children of the master) after the runs. Every worker, "
        "reference apps included, carries what `gunicorn.conf.py` imports in the master (the service's "
        "configuration and logging modules, hence Flask, and the libraries every service worker loads: "
        "SQLAlchemy, the database driver, redis; the app itself and the start-up migration's alembic "
        "stay out of the master).",
        "- Workers are not recycled during a run (`GUNICORN_CMD_ARGS=--max-requests 0`; in production "
        "`gunicorn.conf.py` recycles them after 100,000 ± 10,000 requests): with a socket per worker, a "
        "stopping worker resets the connections queued on its socket, which wrk counts as socket errors "
        "(docs/performance.md). A new worker costs ~0.4 s of CPU, ~4 µs per request at that interval.",
        "- The machine may be shared: compare ratios within one run, not absolute figures across runs.",
    ]


def markdown(results: dict) -> str:
    """BENCHMARKS.md: results table, chart, the extra figures and the method."""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python -m bench` at {results['generated_at']}; raw figures in `{NAME}.json`. "
        "Figures are medians over the rounds; a ratio is the median over rounds of this case's figure "
        "divided by the reference's in the same round (req/s: higher is better; latency: lower is better).",
        "",
        *_results_table(results),
        "",
        *_against_references(results),
        f"![requests/s and latency per case]({NAME}.png)",
        "",
        "## CPU per request",
        "",
        "User + system CPU of the server's workers (from /proc) and of Redis (INFO cpu) over each run, "
        "divided by the requests it served; median over the rounds. Requests/s on a shared machine move "
        "with whatever else its cores run; the CPU a request costs moves far less.",
        "",
        *_cpu_table(results),
        "",
        "## Server time of one request (X-Process-Time)",
        "",
        *_server_time_table(results),
        "",
        *_extras(results),
        "",
        *_method(results),
    ]
    return "\n".join(lines) + "\n"
