"""The failure suite: a real gunicorn (2 workers) on a throwaway Redis and PostgreSQL of its own, a
bounded load on 127.0.0.1, and one fault at a time: Redis stopped and frozen, PostgreSQL stopped and
frozen, a database that comes up after the service, a worker SIGKILLed, SIGTERM to the master with
requests in flight, workers recycled under load.

Run it on its own with `pytest -m failure`. With AIGEN_FAILURE_REPORT=<file> each scenario appends
its row (requests, answers by class, p99 before and during, recovery, writes) to that file as JSON.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, select

from appfactory.config import sqlalchemy_url
from appfactory.db import migrate
from appfactory.db.models import templates
from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.keys import bearer, issue_key
from tests.support.load import NEEDS_DATABASE, Load, classes, p99_ms
from tests.support.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.failure]

DB_TIMEOUT_S = 2.0
FAULT_S = 8.0


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def pg_server():
    server = PostgresServer().start()
    migrate.upgrade(server.url)
    yield server
    server.close()


def _env(redis_server, pg_server, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pg_server.url,
        "REDIS_URL": redis_server.url,
        "CACHE_NAMESPACE": key_namespace(),
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "LOG_LEVEL": "WARNING",
        "DB_TIMEOUT_S": str(DB_TIMEOUT_S),
        "DB_CONNECT_TIMEOUT": "1",
        "AI_LOCAL_LATENCY_MS": "0",
        **extra,
    }


def _seed(url: str, database_url: str) -> tuple[int, dict[str, str]]:
    """A template to read, and the key the load sends (every request of it is authenticated)."""
    key = bearer(issue_key(database_url))
    name = f"seed-{time.monotonic_ns()}"
    created = requests.post(
        f"{url}/api/v1/templates", json={"name": name, "body": "b"}, headers=key, timeout=10
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], key


def _stored_names(database_url: str) -> set[str]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(templates.c.name)).scalars())
    finally:
        engine.dispose()


def _report(
    scenario: str, answers: list, before: list, during: list, recovery_s: float | None, **extra
) -> dict:
    """One row of the suite's table (AIGEN_FAILURE_REPORT)."""
    row = {
        "scenario": scenario,
        "requests": len(answers),
        "by_class": classes(answers),
        "p99_before_ms": p99_ms(before),
        "p99_during_ms": p99_ms(during),
        "recovery_s": recovery_s,
        **extra,
    }
    if target := os.environ.get("AIGEN_FAILURE_REPORT"):
        with open(target, "a") as out:
            out.write(json.dumps(row) + "\n")
    return row


def _recovery_s(run, since: str) -> float | None:
    """Seconds from `since` until the last failed answer (0 when none failed after it)."""
    failed = [a.started for a in run.between(since, None) if a.status is None or a.status >= 500]
    return round(max(failed) - run.marks[since], 2) if failed else 0.0


def _writes_hold(run, database_url: str) -> tuple[int, int]:
    """Every acknowledged write is stored; nothing stored that was not sent."""
    acknowledged, sent = run.acknowledged_writes(), run.sent_writes()
    stored = {name for name in _stored_names(database_url) if name.startswith(run.prefix)}
    assert acknowledged <= stored, acknowledged - stored
    assert stored <= sent, stored - sent
    return len(acknowledged), len(acknowledged & stored)


def _fault_under_load(server: Gunicorn, database_url: str, inject, restore):
    """3 s of load, the fault for FAULT_S, 5 s after its end (mark "healed"), 3 s more; the run."""
    template_id, key = _seed(server.url, database_url)
    with Load(server.url, template_id, headers=key) as load:
        run = load.run
        time.sleep(3)
        run.mark("fault")
        inject()
        time.sleep(FAULT_S)
        run.mark("back")
        restore()
        time.sleep(5)
        run.mark("healed")
        time.sleep(3)
    return run


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_redis_away_under_load_costs_no_5xx_and_no_slow_request(redis_server, pg_server, fault):
    with Gunicorn(_env(redis_server, pg_server), workers=2) as server:
        if fault == "stopped":
            run = _fault_under_load(server, pg_server.url, redis_server.stop, redis_server.start)
        else:
            run = _fault_under_load(server, pg_server.url, redis_server.freeze, redis_server.thaw)
        server.stop()
        log = server.log()
    statuses = classes(run.answers)
    assert set(statuses) <= {"2xx"}, statuses
    # (method, path, status, seconds, started after the fault) of every answer slower than 2 s: one
    # at 4.0 s was seen once in about ten runs during a freeze, its cause not found
    # (docs/resilience.md, "Open"); the bound here is what holds, and the figures are reported.
    slow = [
        (a.method, a.path, a.status, round(a.took, 2), round(a.started - run.marks["fault"], 2))
        for a in run.answers
        if a.took >= 2.0
    ]
    assert len(slow) <= 1 and all(seconds < 5.0 for _, _, _, seconds, _ in slow), slow
    assert p99_ms(run.answers) < 1000
    written = _writes_hold(run, pg_server.url)
    assert "WORKER TIMEOUT" not in log
    before, during = run.between(None, "fault"), run.between("fault", "back")
    _report(
        f"Redis {fault} {FAULT_S:g} s",
        run.answers,
        before,
        during,
        _recovery_s(run, "back"),
        writes=written,
        slowest_s=round(max(a.took for a in run.answers), 2),
    )


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_postgresql_away_under_load_is_503_only_where_needed_and_heals(redis_server, pg_server, fault):
    with Gunicorn(_env(redis_server, pg_server), workers=2) as server:
        workers = server.worker_pids()
        if fault == "stopped":
            run = _fault_under_load(
                server, pg_server.url, lambda: pg_server.stop("immediate"), pg_server.start
            )
        else:
            run = _fault_under_load(server, pg_server.url, pg_server.freeze, pg_server.thaw)
        health = requests.get(f"{server.url}/health", timeout=10)
        assert server.worker_pids() == workers  # healed without a worker restart
        server.stop()
        log = server.log()
    assert health.status_code == 200
    assert all(a.status is not None for a in run.answers)
    for answer in run.answers:
        if answer.status >= 500:
            assert answer.status == 503 and answer.code == "database_unavailable" and answer.json, answer
            assert answer.path.startswith(NEEDS_DATABASE), answer
    during = run.between("fault", "back")
    assert all(a.status < 500 for a in during if not a.path.startswith(NEEDS_DATABASE))
    # One answer at two deadlines (the templates list, 4.0 s) was seen once in CI, its cause not found
    # (docs/resilience.md, "Open"): at most one is allowed, none past two deadlines and a second.
    slow = [
        (a.method, a.path, a.status, round(a.took, 2)) for a in run.answers if a.took >= DB_TIMEOUT_S + 1.0
    ]
    assert len(slow) <= 1 and all(seconds < 2 * DB_TIMEOUT_S + 1.0 for _, _, _, seconds in slow), slow
    after = run.between("healed", None)
    assert after and all(a.status < 500 for a in after)  # healthy within 5 s, no error served from the cache
    recovery = _recovery_s(run, "back")
    assert recovery <= 5.0
    assert "WORKER TIMEOUT" not in log
    written = _writes_hold(run, pg_server.url)
    before = run.between(None, "fault")
    _report(f"PostgreSQL {fault} {FAULT_S:g} s", run.answers, before, during, recovery, writes=written)


def test_a_database_that_comes_up_after_the_service(redis_server):
    late = PostgresServer()  # initialised, not started
    try:
        with Gunicorn(_env(redis_server, late, LOG_LEVEL="INFO"), workers=2) as server:
            before = [requests.get(f"{server.url}{path}", timeout=10) for path in _DATA_PATHS * 2]
            ready = requests.get(f"{server.url}/health/ready", timeout=10)
            assert ready.status_code == 503
            assert {r.status_code for r in before} == {503}
            assert {r.json()["error"]["code"] for r in before} == {"database_unavailable"}
            late.start()
            started = time.monotonic()
            statuses = []
            while time.monotonic() - started < 30:
                answers = [requests.get(f"{server.url}{path}", timeout=10) for path in _DATA_PATHS]
                statuses += [r.status_code for r in answers]
                if all(r.status_code == 200 for r in answers) and (
                    requests.get(f"{server.url}/health/ready", timeout=10).status_code == 200
                ):
                    break
                time.sleep(0.2)
            healed_in = time.monotonic() - started
            assert statuses[-len(_DATA_PATHS) :] == [200] * len(_DATA_PATHS), statuses[-10:]
            assert 500 not in statuses
            server.stop()
            log = server.log()
        assert "Database schema brought to head" in log
        assert log.count("Booting worker") == 2  # no worker was restarted
        sent = len(before) + len(statuses)
        _report("PostgreSQL up after the service", [], [], [], round(healed_in, 2), requests_sent=sent)
    finally:
        late.close()


_DATA_PATHS = ["/api/v1/templates", "/api/v1/templates?limit=1"]


def test_a_sigkilled_worker_fails_only_its_requests_in_flight(redis_server, pg_server):
    with Gunicorn(_env(redis_server, pg_server), workers=2) as server:
        template_id, key = _seed(server.url, pg_server.url)
        with Load(server.url, template_id, fresh=True, headers=key) as load:
            run = load.run
            time.sleep(3)
            victim = min(server.worker_pids())
            run.mark("kill")
            os.kill(victim, signal.SIGKILL)  # a worker of the gunicorn this test started
            time.sleep(5)
        server.stop()
    failed = [a for a in run.answers if a.status is None]
    # A worker holds at most its threads' requests (4), and the load has 4 clients.
    assert len(failed) <= 4, failed
    errors = [a for a in run.answers if a.status is not None and a.status >= 500]
    assert not errors, errors[:5]
    kill = run.marks["kill"]
    assert all(a.started <= kill + 0.05 for a in failed), "a request sent after the kill failed"
    written = _writes_hold(run, pg_server.url)
    before, after = run.between(None, "kill"), run.between("kill", None)
    _report("worker SIGKILL", run.answers, before, after, _recovery_s(run, "kill"), writes=written)


def test_sigterm_to_the_master_lets_every_request_in_flight_complete(redis_server, pg_server):
    env = _env(
        redis_server, pg_server, AI_LOCAL_LATENCY_MS="1500", GUNICORN_THREADS="8", AI_MAX_CONCURRENCY="6"
    )
    with Gunicorn(env, workers=2) as server:
        prompts = [
            f"{server.url}/api/v1/ai/generate?prompt=in-flight-{n}-{time.monotonic_ns()}" for n in range(4)
        ]
        with ThreadPoolExecutor(len(prompts)) as pool:
            pending = [pool.submit(requests.get, url, timeout=30) for url in prompts]
            time.sleep(0.5)  # every request is with a worker, waiting on the 1.5 s model
            server.process.send_signal(signal.SIGTERM)
            answers = [future.result() for future in pending]
        assert server.process.wait(timeout=30) == 0
    assert [a.status_code for a in answers] == [200] * len(prompts)
    assert all(a.json()["cached"] is False for a in answers)
    _report("SIGTERM to the master, 4 requests in flight", [], [], [], None, completed=len(answers))


def test_workers_recycled_under_load_keep_metrics_bounded_and_exact(redis_server, pg_server, tmp_path):
    directory = tmp_path / "prometheus"
    env = _env(
        redis_server,
        pg_server,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        LOG_LEVEL="INFO",
        GUNICORN_CMD_ARGS="--max-requests 300 --max-requests-jitter 30",
    )
    with Gunicorn(env, workers=2) as server:
        template_id, key = _seed(server.url, pg_server.url)
        first_scrape = _scrape_ms(server.url)
        counted_before = _requests_total(requests.get(f"{server.url}/metrics", timeout=10).text)
        with Load(server.url, template_id, pause_s=0.005, fresh=True, headers=key) as load:
            time.sleep(30)
        run = load.run
        deadline = time.monotonic() + 10  # the last recycled workers are reaped
        while len(list(directory.glob("counter_*.db"))) > 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        last_scrape = _scrape_ms(server.url)
        counted = _requests_total(requests.get(f"{server.url}/metrics", timeout=10).text) - counted_before
        booted = server.log().count("Booting worker")
        files = sorted(path.name for path in directory.glob("*.db"))  # while the workers live
    answered = sum(1 for a in run.answers if a.status is not None)
    assert booted >= 2 + answered // 330 // 2, (
        f"workers were not recycled: {booted} boots, {answered} answers"
    )
    assert len([name for name in files if name.startswith("counter_")]) <= 3, files
    assert len(files) <= 3 * 4, files
    # the load's answers, the first count's own scrape and the five timed ones after the load
    assert counted == answered + 1 + 5, (counted, answered)
    assert last_scrape < first_scrape * 2 + 5, (first_scrape, last_scrape)
    assert all(a.status is not None and a.status < 500 for a in run.answers)
    written = _writes_hold(run, pg_server.url)
    _report(
        "workers recycled every ~300 requests, 30 s",
        run.answers,
        run.answers,
        [],
        None,
        writes=written,
        recycled=booted - 2,
        metric_files=len(files),
        scrape_ms=[round(first_scrape, 2), round(last_scrape, 2)],
        counted=counted,
    )


def _scrape_ms(url: str) -> float:
    """The median of five /metrics scrapes, in ms."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[2]


def _requests_total(exposition: str) -> int:
    return int(
        sum(
            float(value)
            for value in re.findall(r"^aigen_http_requests_total\{[^}]*\} (\S+)$", exposition, flags=re.M)
        )
    )
