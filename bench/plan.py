"""What is measured and how hard: the cases and the two run plans (full and --quick)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    """One path on one server; `unique` makes every request's prompt new (an AI cache miss);
    `authenticated` sends the run's API key; `body` makes every request a POST of that JSON."""

    key: str
    label: str
    server: str
    path: str
    unique: bool = False
    authenticated: bool = False
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict, compare=False)  # filled in by the run


REFERENCE_SERVERS = {
    "wsgi": "bench.apps.bare_wsgi:app",
    "flask": "bench.apps.bare_flask:app",
    "flask_redis": "bench.apps.flask_redis:app",
    "plain": "bench.apps.plain:app",
}
SERVICE_APP = "wsgi:app"
AI_PATH = "/api/v1/ai/generate?prompt="

CASES: tuple[Case, ...] = (
    Case("wsgi", "bare WSGI callable (ceiling)", "wsgi", "/hello"),
    Case("flask", "bare Flask route", "flask", "/hello"),
    Case("flask_redis", "bare Flask route + one Redis GET (floor)", "flask_redis", "/hello"),
    Case("plain", "plain assembly: limiter + @cached + JSON log", "plain", "/hello"),
    Case("ai_hit", "AI generation, cache HIT", "service", AI_PATH + "bench-hit"),
    Case(
        "ai_hit_key",
        "AI generation, cache HIT, API key",
        "service",
        AI_PATH + "bench-hit",
        authenticated=True,
    ),
    Case("templates_list", "templates list", "service", "/api/v1/templates"),
    Case("template_by_id", "template by id (database)", "service", "/api/v1/templates/{template_id}"),
    Case("ai_miss", "AI generation, uncached (0 ms model)", "service", AI_PATH, unique=True),
    Case("health", "/health (database + Redis probes)", "service", "/health"),
    Case("live", "/health/live (service floor)", "service", "/health/live"),
)


@dataclass(frozen=True)
class Plan:
    """Durations and sizes of one benchmark run."""

    name: str
    rounds: int
    seconds: int
    warmup_s: int
    server_time_requests: int
    fanout_clients: int
    fanout_latency_s: float
    pg_clients: int
    pg_seconds: int
    workers: int = 2
    wrk_threads: int = 1
    wrk_connections: int = 16


FULL = Plan(
    name="full",
    # Many short rounds: on a shared machine a whole round is sometimes slowed (seen: one in three),
    # and the median of nine pairs stays put where the median of five moved.
    rounds=9,
    seconds=4,
    warmup_s=2,
    server_time_requests=2000,
    fanout_clients=100,
    fanout_latency_s=2.0,
    pg_clients=200,
    pg_seconds=10,
)
QUICK = Plan(
    name="quick",
    rounds=1,
    seconds=1,
    warmup_s=0,
    server_time_requests=50,
    fanout_clients=20,
    fanout_latency_s=0.5,
    pg_clients=200,
    pg_seconds=1,
)
