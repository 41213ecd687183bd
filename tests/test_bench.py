"""Smoke test of the benchmark harness: `python -m bench --quick` runs and writes a sane report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.services import PG_ADMIN_URL, require_redis, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.bench]

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ("wsgi", "flask", "flask_redis", "plain")
ALWAYS_SERVED = ("templates_list", "template_by_id", "health", "live")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """One quick benchmark run into a temporary folder."""
    import psycopg2

    if not shutil.which("wrk"):
        unavailable("wrk is not installed (Debian package `wrk`)")
    require_redis()
    try:
        psycopg2.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_reference_apps_and_service_cases_are_measured(report):
    results = json.loads((report / "BENCHMARKS.json").read_text())
    for key in REFERENCES + ALWAYS_SERVED:
        case = results["cases"][key]
        assert case["status"] == "ok", (key, case["status"])
        median = case["median"]
        assert median["rps"] > 0 and 0 < median["p50_ms"] <= median["p99_ms"], (key, median)
        assert median["non_2xx"] == 0, (key, median)
        # None only when a worker was replaced during the run, which 1-second runs never cause.
        assert median["worker_cpu_us"] > 0 and median["redis_cpu_us"] >= 0, (key, median)
    assert results["cases"]["wsgi"]["ratios"]["wsgi"]["rps"] == pytest.approx(1.0)
    assert results["cases"]["flask"]["ratios"]["flask"]["p99_ms"] == pytest.approx(1.0)
    for key in ("ai_hit", "ai_hit_key", "ai_miss"):
        assert results["cases"][key]["status"] in ("ok", "not available")


def test_cache_hit_case_is_warm_when_served(report):
    results = json.loads((report / "BENCHMARKS.json").read_text())
    hit = results["cases"]["ai_hit"]
    if hit["status"] != "ok":
        pytest.skip("the service does not serve /api/v1/ai/generate")
    assert hit["x_cache"] == "HIT"
    assert hit["ratios"]["plain"]["rps"] > 0 and hit["ratios"]["flask_redis"]["rps"] > 0
    assert "Cache HIT req/s against the plain assembly" in (report / "BENCHMARKS.md").read_text()
    assert results["server_time"]["ai_hit"]["x_cache"].get("HIT") == results["plan"]["server_time_requests"]
    keyed = results["cases"]["ai_hit_key"]  # the same entry, with the run's API key
    assert keyed["status"] == "ok" and keyed["x_cache"] == "HIT"
    assert (
        results["server_time"]["ai_hit_key"]["x_cache"].get("HIT") == results["plan"]["server_time_requests"]
    )
    assert "Cache HIT with an API key against the anonymous HIT" in (report / "BENCHMARKS.md").read_text()
    fan = results["fan_out"]
    assert fan["upstream_calls"] >= 1 and fan["statuses"] == {"200": fan["clients"]}


def test_side_figures_are_sane(report):
    results = json.loads((report / "BENCHMARKS.json").read_text())
    assert results["server_time"]["template_by_id"]["server_p50_ms"] > 0
    pg = results["pg_connections"]
    assert 1 <= pg["held_max"] <= pg["limit"] and pg["non_2xx"] == 0, pg
    workers = results["plan"]["workers"]
    for server, sizes in results["rss_mb"].items():
        assert len(sizes) == workers and all(size > 10 for size in sizes), (server, sizes)


def test_markdown_table_and_chart_are_written(report):
    markdown = (report / "BENCHMARKS.md").read_text()
    results = json.loads((report / "BENCHMARKS.json").read_text())
    assert "| case | path | req/s |" in markdown and "## Method" in markdown
    assert "## CPU per request" in markdown
    for case in results["cases"].values():
        assert case["label"] in markdown
    assert (report / "BENCHMARKS.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hotpath_reports_the_cost_of_a_cache_hit_in_process():
    require_redis()
    done = subprocess.run(
        [sys.executable, "-m", "bench.hotpath", "--requests", "50", "--rounds", "2"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    figure = float(done.stdout.split(": ", 1)[1].split(" µs", 1)[0])
    assert figure > 0, done.stdout


def test_hotpath_serves_a_template_read_from_a_seeded_database(tmp_path):
    require_redis()
    database_url = f"sqlite:///{tmp_path / 'hotpath.sqlite'}"
    command = [sys.executable, "-m", "bench.hotpath", "--path", "/api/v1/templates/1"]
    command += ["--database-url", database_url, "--requests", "5", "--rounds", "1"]
    for _ in range(2):  # the second run finds its template and adds none
        done = subprocess.run(
            command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert done.stdout.startswith("/api/v1/templates/1: "), done.stdout
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM templates")).scalar_one() == 1
    finally:
        engine.dispose()


def test_compare_parses_variants_and_refuses_bad_ones():
    from bench.compare import Variant, parse

    assert parse("hit=service:/api/v1/ai/generate?prompt=x GUNICORN_THREADS=2 LOG_LEVEL=WARNING") == Variant(
        "hit", "service", "/api/v1/ai/generate?prompt=x", {"GUNICORN_THREADS": "2", "LOG_LEVEL": "WARNING"}
    )
    for bad in ("bad", "x=nowhere:/hello", "x=flask:hello", "=flask:/hello", "x=flask:/hello THREADS"):
        with pytest.raises(ValueError):
            parse(bad)


def test_compare_runs_two_variants(report):  # after the quick run: the machine's services answered
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
            "--rounds",
            "1",
            "--seconds",
            "1",
            "a=wsgi:/hello",
            "b=flask:/hello",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| a ", "| b "))]
    assert len(rows) == 2 and "| 1.00× |" in rows[0], done.stdout
