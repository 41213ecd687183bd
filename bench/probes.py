"""Figures beyond wrk: server time, upstream fan-out, database connections, worker memory."""

from __future__ import annotations

import http.client
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import redis

from bench import wrk
from tests.support.services import PostgresDatabase


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _http(url: str) -> tuple[Callable[[float], http.client.HTTPConnection], str]:
    """A connection factory for `url`'s host (given a timeout) and the request target (path?query)."""
    parts = urlsplit(url)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    return partial(http.client.HTTPConnection, parts.hostname, parts.port), target


def server_time(url: str, count: int, unique: bool = False, headers: dict[str, str] | None = None) -> dict:
    """Median and p99 of X-Process-Time (and of the client's round trip) over sequential requests.

    One keep-alive `http.client` connection: the client shares the machine's two cores with the
    server, and a heavier one (requests, ~1 ms of Python per call) measurably slows the server it
    measures (docs/performance.md, "Server time").
    """
    connect, target = _http(url)
    server_ms: list[float] = []
    client_ms: list[float] = []
    caches: Counter[str] = Counter()
    connection = connect(10)
    try:
        for n in range(count):
            path = f"{target}-{uuid.uuid4().hex[:8]}-{n}" if unique else target
            started = time.perf_counter()
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            response.read()
            client_ms.append((time.perf_counter() - started) * 1000.0)
            header = response.getheader("X-Process-Time", "")
            if header.endswith("ms"):
                server_ms.append(float(header[:-2]))
            caches[response.getheader("X-Cache", "-")] += 1
    finally:
        connection.close()
    return {
        "requests": count,
        "server_p50_ms": statistics.median(server_ms) if server_ms else None,
        "server_p99_ms": percentile(server_ms, 99) if server_ms else None,
        "client_p50_ms": statistics.median(client_ms),
        "client_p99_ms": percentile(client_ms, 99),
        "x_cache": dict(caches),
    }


def fan_out(url: str, clients: int, upstream) -> dict:
    """`clients` identical requests released at once; how many reached the upstream, and how long.

    Each client connects first, then all send at once: the time runs from the release to the last
    answer, so it is what the service takes, not thread start-up, connects or a heavy HTTP client
    (`http.client`, not requests: with 100 threads on 2 cores the client's own CPU would count).
    """
    upstream.reset()
    connect, target = _http(url)
    released: list[float] = []
    barrier = threading.Barrier(clients, action=lambda: released.append(time.perf_counter()))
    statuses: Counter[int | str] = Counter()
    caches: Counter[str] = Counter()
    finished: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        connection = connect(120)
        try:
            connection.connect()
            barrier.wait()
            connection.request("GET", target)
            response = connection.getresponse()
            response.read()
            status, cache = response.status, response.getheader("X-Cache", "-")
        except (OSError, http.client.HTTPException) as exc:
            status, cache = type(exc).__name__, "-"
        finally:
            connection.close()
        with lock:
            finished.append(time.perf_counter())
            statuses[status] += 1
            caches[cache] += 1

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "clients": clients,
        "model_latency_s": upstream.delay,
        "upstream_calls": upstream.calls,
        "wall_s": round(max(finished) - released[0], 3) if released else None,
        "statuses": {str(k): v for k, v in statuses.items()},
        "x_cache": dict(caches),
    }


def held_connections(database: PostgresDatabase, url: str, load: wrk.Load, limit: int) -> dict:
    """Sample the database's sessions from pg_stat_activity while wrk holds `load.connections` clients."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(database.connections())
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        figures = wrk.run(url, load)
    finally:
        stop.set()
        sampler.join()
    return {
        "clients": load.connections,
        "seconds": load.seconds,
        "held_max": max(samples, default=0),
        "held_median": statistics.median(samples) if samples else 0,
        "samples": len(samples),
        "limit": limit,
        "rps": figures["rps"],
        "non_2xx": figures["non_2xx"],
        "socket_errors": figures["socket_errors"],
    }


def workers(master_pid: int) -> list[int]:
    """Pids of the direct children (gunicorn workers) of `master_pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master_pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # the process went away while we looked
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def worker_cpu_s(master_pid: int) -> dict[int, float]:
    """User + system CPU seconds of each gunicorn worker of `master_pid`, by pid."""
    used = {}
    for pid in workers(master_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
    return used


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (INFO cpu, main thread and children)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


_MEMORY_FIELDS = ("VmRSS", "RssAnon", "RssFile")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of a process (from /proc/<pid>/status), in MiB."""
    sizes = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in _MEMORY_FIELDS:
            sizes[name] = round(int(value.split()[0]) / 1024.0, 1)
    return sizes


def worker_rss_mb(master_pid: int) -> list[float]:
    """Resident memory of each gunicorn worker of `master_pid`, in MiB."""
    sizes = []
    for pid in workers(master_pid):
        try:
            sizes.append(memory_mb(pid)["VmRSS"])
        except (OSError, KeyError):  # the process went away (a zombie has no VmRSS)
            continue
    return sorted(sizes)


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "loadavg_at_start": os.getloadavg()}
