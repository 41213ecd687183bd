"""Under a real gunicorn with two workers: every output line is JSON, one per request, metrics sum up."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import key_namespace
from tests.observability.test_metrics import TEMPLATE_ROUTE, promtool_check
from tests.support.gunicorn import Gunicorn
from tests.support.services import REDIS_URL

pytestmark = pytest.mark.slow

CORE_KEYS = {"timestamp", "level", "logger", "message", "request_id"}
REQUEST_KEYS = {"method", "path", "status", "duration_ms", "remote_addr", "cache"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "REDIS_URL": REDIS_URL,  # several workers need the shared Redis
        "CACHE_NAMESPACE": key_namespace(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "GUNICORN_THREADS": "2",
        **extra,
    }


def _json_lines(text: str) -> list[dict]:
    """Every line of the output, each of which must be one JSON object with the core keys."""
    lines = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            pytest.fail(f"not a JSON line: {raw!r}")
        assert isinstance(line, dict) and CORE_KEYS <= line.keys(), raw
        lines.append(line)
    return lines


def _get(url: str, request_id: str | None) -> requests.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    # A new connection per request, so the kernel hands them to either worker.
    return requests.get(url, headers={**headers, "Connection": "close"}, timeout=10)


def _fire(server: Gunicorn, paths: list[str]) -> list[requests.Response]:
    ids = [f"t-{uuid.uuid4().hex[:12]}" if i % 2 else None for i in range(len(paths))]
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda p, i: _get(server.url + p, i), paths, ids))


def _route_total(exposition: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "aigen_http_requests_total" and sample.labels["route"] == TEMPLATE_ROUTE:
                total += sample.value
    return total


def _per_process_counts(directory: Path) -> dict[int, float]:
    """Requests to the template route as each worker wrote them to its own counter file."""
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        if not path.stem.split("_")[1].isdigit():
            continue  # counter_archive.db: the reaped workers' counts
        pid = int(path.stem.split("_")[1])
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "aigen_http_requests_total" and labels["route"] == TEMPLATE_ROUTE:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def _stale_counter(directory: Path) -> None:
    """What a previous run could leave behind: 5 template requests of a long-gone worker."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = MmapedDict(str(directory / "counter_999999.db"))
    key = mmap_key(
        "aigen_http_requests",
        "aigen_http_requests_total",
        ["method", "route", "status"],
        ["GET", TEMPLATE_ROUTE, "404"],
        "stale",
    )
    stale.write_value(key, 5.0, 0.0)
    stale.close()


def test_logs_are_json_one_line_per_request_and_metrics_sum_over_workers(tmp_path):
    directory = tmp_path / "prometheus"
    _stale_counter(directory)
    with Gunicorn(_env(tmp_path), workers=2) as server:
        # Batches until both workers have served some: the second may still be booting at first.
        responses: list[requests.Response] = []
        for _ in range(20):
            responses += _fire(server, [f"/api/v1/templates/{i}" for i in range(1, 11)])
            if len(_per_process_counts(directory)) == 2 and len(responses) >= 40:
                break
        n = len(responses)
        assert [r.status_code for r in responses] == [404] * n

        exposition = requests.get(f"{server.url}/metrics", timeout=10).text
        assert _route_total(exposition) == n
        promtool_check(exposition)
        per_worker = _per_process_counts(directory)
        assert sum(per_worker.values()) == n
        assert len([c for c in per_worker.values() if c > 0]) == 2, f"not spread: {per_worker}"

        server.stop()
        lines = _json_lines(server.log())

    messages = [line["message"] for line in lines]
    assert any(m.startswith("Starting gunicorn") for m in messages)
    assert sum(m.startswith("Booting worker") for m in messages) == 2
    assert "Shutting down: Master" in messages
    app_errors = [x for x in lines if x["level"] in ("ERROR", "CRITICAL") and x["logger"].startswith("app")]
    assert not app_errors
    assert "Slow request detected" not in messages

    request_lines = [line for line in lines if line["logger"] == "appfactory.access"]
    for response in responses:
        rid = response.headers["X-Request-ID"]
        [line] = [line for line in request_lines if line["request_id"] == rid]
        assert REQUEST_KEYS <= line.keys()
        assert line["path"] == response.request.path_url
        assert (line["method"], line["status"], line["cache"]) == ("GET", 404, None)
        assert line["remote_addr"] == "127.0.0.1"
        assert line["duration_ms"] <= float(response.headers["X-Process-Time"].removesuffix("ms"))


def test_slow_request_warning_under_gunicorn(tmp_path, postgres):
    env = _env(tmp_path, DATABASE_URL=postgres.url, SLOW_REQUEST_MS="1")
    with Gunicorn(env, workers=2) as server:
        # Each worker's first database request opens a PostgreSQL connection: well over 1 ms.
        responses = _fire(server, ["/api/v1/templates"] * 12)
        assert {r.status_code for r in responses} == {200}
        server.stop()
        lines = _json_lines(server.log())

    ids = {r.headers["X-Request-ID"] for r in responses}
    requests_by_id = {
        line["request_id"]: line
        for line in lines
        if line["message"] == "request" and line["request_id"] in ids
    }
    assert len(requests_by_id) == len(ids)
    warnings = [
        line for line in lines if line["message"] == "Slow request detected" and line["request_id"] in ids
    ]
    assert warnings, "no request was slower than 1 ms"
    for warning in warnings:
        assert warning["level"] == "WARNING"
        assert warning["threshold_ms"] == 1
        original = requests_by_id[warning["request_id"]]
        assert {k: warning[k] for k in REQUEST_KEYS} == {k: original[k] for k in REQUEST_KEYS}
        assert warning["duration_ms"] >= 1
    warned = {w["request_id"] for w in warnings}
    for rid, line in requests_by_id.items():
        if line["duration_ms"] > 1.01:
            assert rid in warned


def test_dead_worker_keeps_its_counts_and_drops_its_gauge(tmp_path):
    directory = tmp_path / "prometheus"
    with Gunicorn(_env(tmp_path), workers=2) as server:
        n = 20
        _fire(server, [f"/api/v1/templates/{i}" for i in range(1, n + 1)])
        per_worker = _per_process_counts(directory)
        victim = max(per_worker, key=per_worker.get)
        assert (directory / f"gauge_livesum_{victim}.db").exists()

        os.kill(victim, signal.SIGTERM)  # a gunicorn worker this test started
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            booted = server.log().count("Booting worker")
            if booted == 3 and not (directory / f"gauge_livesum_{victim}.db").exists():
                break
            time.sleep(0.1)
        assert not (directory / f"gauge_livesum_{victim}.db").exists()

        exposition = requests.get(f"{server.url}/metrics", timeout=10).text
        assert _route_total(exposition) == n
        gauges = [
            s.value
            for family in text_string_to_metric_families(exposition)
            for s in family.samples
            if s.name == "aigen_db_pool_checked_out_connections"
        ]
        assert gauges == [0.0]
        server.stop()
        _json_lines(server.log())


def _lines_of_a_failed_start(server: Gunicorn) -> list[dict]:
    """Start a server that must fail to start; its output, each line parsed as JSON."""
    try:
        with pytest.raises(RuntimeError):
            server.start(timeout=20)
        return _json_lines(server.log())
    finally:
        server.__exit__()


def test_bad_configuration_is_one_json_line(tmp_path):
    lines = _lines_of_a_failed_start(Gunicorn(_env(tmp_path, DB_POOL_SIZE="ten"), workers=1))
    assert len(lines) == 1
    assert lines[0]["level"] == "CRITICAL"
    assert "DB_POOL_SIZE" in lines[0]["message"]


def test_errors_gunicorn_prints_outside_logging_are_json_too(tmp_path):
    lines = _lines_of_a_failed_start(Gunicorn(_env(tmp_path), workers=1, app="wsgi:no_such_app"))
    messages = [line["message"] for line in lines]
    # gunicorn print()s this one straight to stderr in the worker.
    assert "Failed to find attribute 'no_such_app' in 'wsgi'." in messages
    assert any("App failed to load" in m for m in messages)


def test_recycled_workers_leave_one_archive_and_every_count_exact(tmp_path):
    directory = tmp_path / "prometheus"
    env = _env(tmp_path, GUNICORN_CMD_ARGS="--max-requests 25 --max-requests-jitter 0")
    with Gunicorn(env, workers=2) as server:
        n = 300
        responses = _fire(server, [f"/api/v1/templates/{i}" for i in range(1, n + 1)])
        assert [r.status_code for r in responses] == [404] * n
        # Each worker recycled at least once, and the last ones reaped. A gevent worker past max_requests
        # goes on accepting until its loop's next tick (up to 1 s): it may serve more than 25 first.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(list(directory.glob("counter_*.db"))) > 3 or server.log().count("Booting worker") < 4
        ):
            time.sleep(0.1)
        files = sorted(path.name for path in directory.glob("*.db"))
        exposition = requests.get(f"{server.url}/metrics", timeout=10).text
        booted = server.log().count("Booting worker")
    assert booted >= 4, "workers were not recycled"
    assert _route_total(exposition) == n
    assert len([name for name in files if name.startswith("counter_")]) <= 3, files  # 2 live + the archive
    assert "counter_archive.db" in files and "histogram_archive.db" in files
    assert len(files) <= 3 * 4, files  # counter, histogram, 2 live gauges: per live worker, plus archives


def test_text_lines_escape_what_a_client_put_in_the_path(tmp_path):
    # CR, VT, FF, ESC, FS, NEL, U+2028, U+2029, DEL: each ends a line for str.splitlines() or a log reader,
    # or rewrites a terminal; the client percent-encodes them, the server logs them decoded. No space:
    # a value with one was quoted already.
    path = "/a\r\x0b\x0c\x1b[2J\x1c\x85\u2028\u2029\x7f2026-01-01T00:00:00.000Z|INFO|forged"
    with Gunicorn(_env(tmp_path, LOG_FORMAT="text"), workers=1) as server:
        response = requests.get(
            server.url + urllib.parse.quote(path), headers={"Connection": "close"}, timeout=10
        )
        server.stop()
        log = server.log()
    assert response.status_code == 404
    assert all(line.isprintable() for line in log.split("\n"))  # nothing raw but the line ends
    [line] = [line for line in log.splitlines() if response.headers["X-Request-ID"] in line]
    assert "appfactory.access" in line and " status=404 " in line
    logged = line.split(" path=", 1)[1].split(" status=", 1)[0]
    assert json.loads(logged) == path  # quoted, escaped: \r, \u001b, \u2028
