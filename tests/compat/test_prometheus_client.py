"""compat.prometheus_client: folding a dead worker's files into the archive changes no count."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from appfactory.compat import prometheus_client as compat_prometheus

WORKER = """
from prometheus_client import Counter, Histogram
requests = Counter("t_requests_total", "requests", ["route"])
latency = Histogram("t_latency_seconds", "latency", buckets=(0.1, 1.0))
for n in range({n}):
    requests.labels("/a" if n % 2 else "/b").inc()
    latency.observe(n / 10)
print(__import__("os").getpid())
"""


def _worker(directory: str, n: int) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    done = subprocess.run([sys.executable, "-c", WORKER.format(n=n)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def _samples(directory: str) -> dict:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def test_archiving_dead_workers_keeps_every_count(tmp_path, monkeypatch):
    directory = str(tmp_path)
    first, second, third = _worker(directory, 5), _worker(directory, 8), _worker(directory, 3)
    before = _samples(directory)
    assert before[("t_requests_total", (("route", "/a"),))] == 2 + 4 + 1
    for pid in (first, second):
        assert compat_prometheus.archive_dead_worker(directory, pid) == 2  # counter and histogram
    assert _samples(directory) == before
    names = sorted(os.listdir(directory))
    assert names == sorted(
        ["counter_archive.db", "histogram_archive.db", f"counter_{third}.db", f"histogram_{third}.db"]
    )

    monkeypatch.setattr(compat_prometheus, "PRIVATE", False)  # the public way: the files stay
    assert compat_prometheus.archive_dead_worker(directory, third) == 0
    assert f"counter_{third}.db" in os.listdir(directory) and _samples(directory) == before
