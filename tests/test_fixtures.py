"""The suite's own promises: a database a test creates is dropped however its set-up ends, and a
missing pgbouncer skips the run through it (fails under CI=true) instead of failing on its skips."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg2
import pytest

import tests.scaleout.test_two_instances as two_instances
from tests.support import services

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _test_databases() -> set[str]:
    """The t_<hex> databases on the machine's PostgreSQL (every session's)."""
    try:
        admin = psycopg2.connect(services.PG_ADMIN_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        services.unavailable(f"PostgreSQL is not reachable at {services.PG_ADMIN_URL}: {exc}")
    with admin, admin.cursor() as cur:
        cur.execute(r"SELECT datname FROM pg_database WHERE datname LIKE 't\_%'")
        names = {row[0] for row in cur.fetchall()}
    admin.close()
    return names


# A test on the `postgres` fixture (tests/conftest.py) whose set-up fails after the database exists;
# each database it creates is written to $CREATED.
INNER = """
import os

from appfactory.db import migrate
from tests.support import services

_create = services.PostgresDatabase.__init__


def _recorded(self):
    _create(self)
    with open(os.environ["CREATED"], "a") as created:
        created.write(self.name + "\\n")


services.PostgresDatabase.__init__ = _recorded
{fault}


def test_on_postgres(postgres):
    pass
"""

FAULTS = {
    "migration fails": (
        "def _fail(url):\n    raise RuntimeError('migration failed')\nmigrate.upgrade = _fail",
        {},
        "1 error",
    ),
    "pgbouncer absent": (
        "services.pgbouncer_binary = lambda: None",
        {"AIGEN_TEST_THROUGH_PGBOUNCER": "1"},
        "1 skipped",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_postgres_fixture_drops_its_database_when_its_set_up_ends_early(tmp_path, fault):
    code, env, outcome = FAULTS[fault]
    inner = tmp_path / "test_inner.py"
    inner.write_text(INNER.format(fault=code))
    created = tmp_path / "created.txt"
    before = _test_databases()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            f"--rootdir={ROOT}",
            "-c",
            os.path.join(ROOT, "pyproject.toml"),
            f"--basetemp={tmp_path / 'run'}",
            str(inner),
        ],
        cwd=ROOT,
        env={**os.environ, **env, "CREATED": str(created), "CI": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    after = _test_databases()
    assert outcome in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    names = set(created.read_text().split())
    assert len(names) == 1 and names.isdisjoint(before)  # the run made one database of its own...
    assert names.isdisjoint(after), f"left behind: {names & after}"  # ...and dropped it


def test_without_pgbouncer_the_crud_run_through_it_skips_before_it_starts(tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the inner pytest run started")

    monkeypatch.setattr(services, "pgbouncer_binary", lambda: None)
    monkeypatch.setattr(two_instances.subprocess, "run", never)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pgbouncer is not installed"):
        two_instances.test_the_crud_tests_pass_through_pgbouncer(tmp_path, capsys)
    monkeypatch.setenv("CI", "true")  # there a missing tool is a failure, as for every service
    with pytest.raises(pytest.fail.Exception, match="pgbouncer is not installed"):
        two_instances.test_the_crud_tests_pass_through_pgbouncer(tmp_path, capsys)


def test_the_bench_environment_drops_its_database_when_its_set_up_fails(monkeypatch):
    from bench import environment

    def fail(url):
        raise RuntimeError("migration failed")

    monkeypatch.setattr(environment.migrate, "upgrade", fail)
    bench = environment.Environment()
    assert bench.database.name in _test_databases()
    with pytest.raises(RuntimeError, match="migration failed"), bench:
        pass
    assert bench.database.name not in _test_databases()
