"""What must hold across two instances of the service, whatever Redis they share (standalone or
Sentinel): used by the scale-out tests on each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import key_namespace
from tests.support.gunicorn import ROOT
from tests.support.http import fresh
from tests.support.keys import bearer
from tests.support.load import Load, classes
from tests.support.windows import clear_of_minute_edge

LIMIT = 20


def instance_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Settings both instances share: one database, one Redis, one key namespace."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CACHE_NAMESPACE": key_namespace(),
        "AI_ALLOW_ANONYMOUS": "false",
        "AI_LOCAL_LATENCY_MS": "700",  # long enough for 50 concurrent callers to meet in one flight
        "RATE_LIMIT_SIGNUPS_PER_MINUTE": "1000",
        "RATE_LIMIT_PER_MINUTE": str(LIMIT),
        "RATE_LIMIT_AI_PER_MINUTE": "1000",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def signup(url: str, name: str) -> tuple[int, str]:
    status, _, body = fresh(url, "POST", "/api/v1/users", {"email": f"{name}@example.com", "name": name})
    assert status == 201, body
    return body["id"], body["api_key"]


def hold_across(a: str, b: str) -> None:
    """Limits, the cache, single flight and revocation, each exact across the instances `a` and `b`."""
    both = [a, b]

    # A rate limit is exact across both: LIMIT requests alternating between them, then 429 on either.
    _, key = signup(a, "limits")
    clear_of_minute_edge()
    statuses = [fresh(both[i % 2], "GET", "/api/v1/templates", key=key)[0] for i in range(LIMIT + 2)]
    assert statuses == [200] * LIMIT + [429] * 2

    # A value cached through one is a HIT through the other.
    _, key = signup(b, "cache")
    first = fresh(a, "GET", "/api/v1/ai/generate?prompt=shared", key=key)
    second = fresh(b, "GET", "/api/v1/ai/generate?prompt=shared", key=key)
    assert (first[1]["X-Cache"], second[1]["X-Cache"]) == ("MISS", "HIT")
    assert first[2]["text"] == second[2]["text"]

    # 50 concurrent identical uncached generations split over both: one upstream call.
    def generate(i: int) -> tuple[int, dict, dict]:
        return fresh(both[i % 2], "GET", "/api/v1/ai/generate?prompt=flight", key=key)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(generate, range(50)))
    assert [status for status, _, _ in answers] == [200] * 50
    outcomes = sorted(headers["X-Cache"] for _, headers, _ in answers)
    assert outcomes.count("MISS") == 1, outcomes  # the one computation; the other 49 waited for it
    assert len({body["generated_at"] for _, _, body in answers}) == 1

    # A key revoked through one (its user deleted there) is refused by the other at once.
    user_id, key = signup(a, "revoked")
    assert fresh(b, "GET", "/api/v1/ai/generate?prompt=shared", key=key)[0] == 200  # b remembers it
    assert fresh(a, "DELETE", f"/api/v1/users/{user_id}", key=key)[0] == 204
    assert [fresh(b, "GET", "/api/v1/ai/generate?prompt=shared", key=key)[0] for _ in range(4)] == [401] * 4


def cli_works(env: dict[str, str], url: str) -> None:
    """`flask cache stats`, `flask cache invalidate` and `flask keys revoke` work on the same Redis: the
    revoked key is refused by the instance at `url` on its next request."""
    _, key = signup(url, "cli")
    assert fresh(url, "GET", "/api/v1/ai/generate?prompt=cli", key=key)[0] == 200
    key_id = key.split("_")[1]
    for args in (["cache", "stats"], ["cache", "invalidate", "templates"], ["keys", "revoke", key_id]):
        flask_command(env, *args)
    assert fresh(url, "GET", "/api/v1/ai/generate?prompt=cli", key=key)[0] == 401


# What the load sends: the cache and the limiter on Redis, the key's revocation version too.
_FAILOVER_MIX = [
    ("GET", "/api/v1/ai/generate?prompt=load-hit", None),
    ("POST", "/api/v1/ai/generate", {"prompt": "load-post"}),
]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until `condition()` holds; TimeoutError naming `what` past `timeout_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(what)
        time.sleep(0.05)
    return time.monotonic() - started


def failover_under_load(a: str, b: str, lose_primary: Callable[[], float]) -> tuple[dict[str, int], float]:
    """A load on both instances while `lose_primary()` stops a Redis primary and returns the seconds
    until a replica took over; then 3 s more. Returns the answers' classes and those seconds, after
    checking the instances cache across each other again."""
    # A key per instance's load, on the generation budget (RATE_LIMIT_AI_PER_MINUTE, 1,000): the load
    # measures failures, not limits.
    loads = [
        Load(url, 0, clients=3, pause_s=0.02, headers=bearer(signup(url, f"load{n}")[1]), mix=_FAILOVER_MIX)
        for n, url in enumerate((a, b))
    ]
    _, key = signup(a, "after")
    for load in loads:
        load.__enter__()
    try:
        time.sleep(1.5)
        without_primary = lose_primary()
        time.sleep(3)  # and the instances find the new primary
    finally:
        for load in loads:
            load.__exit__(None, None, None)
    counts = classes([answer for load in loads for answer in load.run.answers])

    # After the failover the instances use the promoted replica: cached across them again.
    first = fresh(a, "GET", "/api/v1/ai/generate?prompt=after", key=key)
    second = fresh(b, "GET", "/api/v1/ai/generate?prompt=after", key=key)
    assert (first[1]["X-Cache"], second[1]["X-Cache"]) == ("MISS", "HIT")
    return counts, without_primary


def flask_command(env: dict[str, str], *args: str) -> str:
    """`flask <args>` with the instances' settings; what it printed."""
    run = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout
