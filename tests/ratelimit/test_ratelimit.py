"""Rate limits through the Flask test client: headers, exemptions, policies, storage state."""

from __future__ import annotations

import time

import pytest
from flask import request
from prometheus_client import REGISTRY

from appfactory import create_app
from tests.conftest import as_admin, base_overrides
from tests.support.keys import bearer, issue_key
from tests.support.services import RedisServer, free_port, require_redis
from tests.support.windows import clear_of_minute_edge

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit")


@pytest.fixture
def make_app(database_url):
    """Apps with small limits; each worker of one, so the memory share is the whole limit."""
    clear_of_minute_edge()
    apps = []

    def make(**overrides):
        settings = {"DATABASE_URL": database_url, "WEB_CONCURRENCY": 1, "RATE_LIMIT_PER_MINUTE": 3}
        app = create_app(base_overrides(**{**settings, **overrides}))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["db"].dispose()


def _assert_headers(response, limit, remaining, policy="default"):
    for name in HEADERS:
        assert name in response.headers, name
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    reset = int(response.headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + 61
    assert response.headers["RateLimit-Policy"] == f'"{policy}";q={limit};w=60'
    assert response.headers["RateLimit"].startswith(f'"{policy}";r={remaining};t=')


def test_headers_on_success_and_errors_down_to_429(make_app):
    client = as_admin(make_app())
    steps = [
        (client.post, "/api/v1/templates", {"json": {"name": "a", "body": "b"}}, 201),
        (client.get, "/api/v1/templates?limit=0", {}, 422),
        (client.get, "/api/v1/no/such/thing", {}, 404),
    ]
    for remaining, (send, path, kwargs, status) in zip((2, 1, 0), steps, strict=True):
        response = send(path, **kwargs)
        assert response.status_code == status, path
        _assert_headers(response, 3, remaining)
        assert "Retry-After" not in response.headers

    limited = client.delete("/api/v1/templates")
    assert limited.status_code == 429
    _assert_headers(limited, 3, 0)
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert limited.headers["RateLimit"] == f'"default";r=0;t={retry_after}'
    error = limited.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert "3 requests per 60 s" in error["message"]


def test_unknown_method_under_api_is_limited_with_headers(make_app):
    response = make_app().test_client().delete("/api/v1/templates")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    _assert_headers(response, 3, 2)


def test_health_and_metrics_are_exempt(make_app):
    app = make_app(RATE_LIMIT_PER_MINUTE=1)
    app.add_url_rule("/metrics", "metrics_stand_in", lambda: "metrics 1\n")
    client = app.test_client()
    for _ in range(3):
        for path in ("/health", "/health/live", "/health/ready", "/metrics"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "X-RateLimit-Limit" not in response.headers
    assert client.get("/api/v1/templates").status_code == 200
    assert client.get("/api/v1/templates").status_code == 429


def test_paths_outside_api_without_a_route_are_not_counted(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=1).test_client()
    for _ in range(3):
        response = client.get("/no/such/path")
        assert response.status_code == 404
        assert "X-RateLimit-Limit" not in response.headers
    assert client.get("/api/v1/templates").status_code == 200


def _ai_app(make_app, **overrides):
    app = make_app(**overrides)
    assert "ai" in app.blueprints
    return app


def test_without_its_own_limit_ai_generation_shares_the_default_budget(make_app):
    client = _ai_app(make_app, RATE_LIMIT_PER_MINUTE=3).test_client()
    generated = client.get("/api/v1/ai/generate?prompt=hi")
    _assert_headers(generated, 3, 2)
    _assert_headers(client.get("/api/v1/templates"), 3, 1)
    assert client.get("/api/v1/ai/generate?prompt=hi").status_code == 200
    assert client.get("/api/v1/ai/generate?prompt=hi").status_code == 429


def test_a_blueprint_named_ai_gets_its_own_budget(make_app):
    client = _ai_app(make_app, RATE_LIMIT_PER_MINUTE=10, RATE_LIMIT_AI_PER_MINUTE=2).test_client()
    url = "/api/v1/ai/generate?prompt=hi"
    first = client.get(url)
    assert first.status_code == 200
    _assert_headers(first, 2, 1, policy="ai")
    assert client.get(url).status_code == 200
    limited = client.get(url)
    assert limited.status_code == 429
    _assert_headers(limited, 2, 0, policy="ai")
    # The AI budget is separate: the default one is untouched.
    _assert_headers(client.get("/api/v1/templates"), 10, 9)


def test_while_redis_is_away_each_worker_enforces_its_share_of_the_limit(make_app):
    from tests.support.services import free_port

    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(RATE_LIMIT_PER_MINUTE=60, WEB_CONCURRENCY=4, REDIS_URL=unreachable).test_client()
    statuses = [client.get("/api/v1/templates").status_code for _ in range(16)]
    assert statuses == [200] * 15 + [429]


def test_without_redis_the_one_worker_enforces_the_whole_limit(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=20, WEB_CONCURRENCY=None).test_client()
    statuses = [client.get("/api/v1/templates").status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]


def test_each_api_key_gets_its_own_budget(make_app):
    app = make_app(RATE_LIMIT_PER_MINUTE=1)
    first, second = (bearer(issue_key(app.config["DATABASE_URL"])) for _ in range(2))
    client = app.test_client()
    assert client.get("/api/v1/templates").status_code == 200
    assert client.get("/api/v1/templates").status_code == 429  # the address's budget
    assert client.get("/api/v1/templates", headers=first).status_code == 200
    assert client.get("/api/v1/templates", headers=second).status_code == 200
    assert client.get("/api/v1/templates", headers=first).status_code == 429


def test_forwarded_for_counts_only_through_trusted_proxies(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=1).test_client()
    assert client.get("/api/v1/templates", headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 200
    assert client.get("/api/v1/templates", headers={"X-Forwarded-For": "10.0.0.2"}).status_code == 429

    client = make_app(RATE_LIMIT_PER_MINUTE=1, TRUSTED_PROXIES=1).test_client()
    assert client.get("/api/v1/templates", headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 200
    assert client.get("/api/v1/templates", headers={"X-Forwarded-For": "10.0.0.2"}).status_code == 200
    spoofed = {"X-Forwarded-For": "10.9.9.9, 10.0.0.1"}
    assert client.get("/api/v1/templates", headers=spoofed).status_code == 429


def test_forwarded_for_counts_only_from_a_listed_proxy(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=1, TRUSTED_PROXIES="10.0.0.0/8").test_client()
    forged = {"X-Forwarded-For": "198.51.100.1"}
    assert client.get("/api/v1/templates", headers=forged).status_code == 200  # 127.0.0.1 is not listed
    forged = {"X-Forwarded-For": "198.51.100.2"}
    assert client.get("/api/v1/templates", headers=forged).status_code == 429

    proxy = {"REMOTE_ADDR": "10.0.0.7"}
    for client_address in ("198.51.100.1", "198.51.100.2"):
        forwarded = {"X-Forwarded-For": f"203.0.113.9, {client_address}"}
        assert client.get("/api/v1/templates", headers=forwarded, environ_base=proxy).status_code == 200
    again = {"X-Forwarded-For": "203.0.113.10, 198.51.100.1"}
    assert client.get("/api/v1/templates", headers=again, environ_base=proxy).status_code == 429


def test_every_address_budget_counts_an_ipv6_64_as_one_client(make_app):
    """The default budget, sign-ups and refused keys: a /64 holds 2^64 addresses, one subscriber's."""
    app = make_app(RATE_LIMIT_PER_MINUTE=1, RATE_LIMIT_SIGNUPS_PER_MINUTE=1, AUTH_FAILURES_PER_MINUTE=1)
    client = app.test_client()

    def status(address: str, method: str = "GET", **kwargs) -> int:
        path = "/api/v1/users" if method == "POST" else "/api/v1/templates"
        return client.open(path, method=method, environ_base={"REMOTE_ADDR": address}, **kwargs).status_code

    assert status("2001:db8:1:2::1") == 200
    assert status("2001:db8:1:2:ffff:ffff:ffff:ffff") == 429  # the same /64
    assert status("2001:db8:1:3::1") == 200  # the next /64
    assert status("::ffff:203.0.113.5") == 200  # IPv4-mapped: the IPv4 client
    assert status("203.0.113.5") == 429

    signup = {"json": {"email": "a@example.com", "name": "A"}}
    assert status("2001:db8:5::1", "POST", **signup) == 201
    signup = {"json": {"email": "b@example.com", "name": "B"}}
    assert status("2001:db8:5::2", "POST", **signup) == 429

    wrong = {"headers": bearer(f"aig_1_{'y' * 43}")}
    assert status("2001:db8:7::1", **wrong) == 401
    assert status("2001:db8:7::2", **wrong) == 429


def _limited_count() -> float:
    return REGISTRY.get_sample_value("aigen_ratelimit_limited_total", {"policy": "default"}) or 0.0


def test_429_is_counted_in_metrics(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=1).test_client()
    before = _limited_count()
    client.get("/api/v1/templates")
    client.get("/api/v1/templates")
    client.get("/api/v1/templates")
    assert _limited_count() == before + 2


def test_disabled_limiter_sends_no_headers(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=1, RATELIMIT_ENABLED="false").test_client()
    for _ in range(3):
        response = client.get("/api/v1/templates")
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers
    assert client.get("/health").get_json()["rate_limit_storage"] == "disabled"


def test_health_reports_memory_storage(make_app):
    assert make_app().test_client().get("/health").get_json()["rate_limit_storage"] == "memory"


def _client_commands(redis, action) -> list[str]:
    """Commands that the app (not scripts, not this test) sent to Redis while `action` ran."""
    with redis.monitor() as monitor:
        action()
        redis.echo("done")
        seen = []
        for entry in monitor.listen():
            if entry["command"] == "ECHO done":
                return [command for port, command in seen if port != entry["client_port"]]
            if entry["client_type"] != "lua":
                seen.append((entry["client_port"], entry["command"].split()[0]))


def test_redis_storage_sends_one_command_per_request(make_app):
    server = RedisServer().start()
    try:
        app = make_app(REDIS_URL=server.url, RATE_LIMIT_PER_MINUTE=100)
        client = app.test_client()
        assert client.get("/health").get_json()["rate_limit_storage"] == "redis"
        client.get("/api/v1/nothing")  # loads the script once
        responses = []
        redis = require_redis(server.url)
        commands = _client_commands(
            redis, lambda: responses.extend(client.get("/api/v1/nothing") for _ in range(10))
        )
        # The headers came from the hits themselves, not from a second query per request.
        assert commands == ["EVALSHA"] * 10
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == [str(n) for n in range(98, 88, -1)]
        keys = [key.decode() for key in redis.keys()]
        assert keys and all(key.startswith(app.config["CACHE_NAMESPACE"] + ":rl:") for key in keys)
    finally:
        server.close()


def test_redis_down_falls_back_to_memory_share_without_failing(make_app):
    gauge = "aigen_ratelimit_fallback_active"
    app = make_app(
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", RATE_LIMIT_PER_MINUTE=60, WEB_CONCURRENCY=4
    )
    client = app.test_client()
    statuses = []
    for _ in range(16):
        response = client.get("/api/v1/templates")
        statuses.append(response.status_code)
        assert response.headers["X-RateLimit-Limit"] == "15"
    assert statuses == [200] * 15 + [429]
    assert REGISTRY.get_sample_value(gauge) == 1
    assert client.get("/health").get_json()["rate_limit_storage"] == "memory-fallback"


def test_a_window_read_after_redis_failed_answers_from_memory_not_a_500():
    """Where the hit reads no window along (Cluster, the public way), the headers ask the storage for
    it: Redis failing between the hit and that read must not fail the answered request."""
    from appfactory.ratelimit.storage import LimitStorage

    server = RedisServer().start()
    try:
        storage = LimitStorage(f"aigen+{server.url}", workers=2, key_prefix="t:rl")
        assert storage.acquire_sliding_window_entry("k", 10, 60) is True
        assert storage.get_sliding_window("k", 60)[2] == 1  # counted on Redis
        server.stop()
        counts = storage.get_sliding_window("k", 60)  # (previous, its expiry, current, its expiry)
        assert (counts[0], counts[2]) == (0, 0)  # the worker's memory, where nothing was counted
        assert storage.mode == "memory-fallback"  # the failure opened the breaker
        assert storage.get("k") == 0 and storage.incr("k", 60) == 1  # the other reads: memory too
    finally:
        server.close()


def _add_probe(app) -> None:
    """/api/v1/probe: a single view with a `probe` budget of RATE_LIMIT_AI_PER_MINUTE."""
    from appfactory.ratelimit import policy_limit

    @policy_limit("RATE_LIMIT_AI_PER_MINUTE", "probe")
    def probe():
        return {"ok": True}

    app.add_url_rule("/api/v1/probe", "probe", probe)


def test_policy_limit_decorates_a_single_view(make_app):
    app = make_app(RATE_LIMIT_PER_MINUTE=10, RATE_LIMIT_AI_PER_MINUTE=1)
    _add_probe(app)
    client = app.test_client()
    first = client.get("/api/v1/probe")
    assert first.status_code == 200
    _assert_headers(first, 1, 0, policy="probe")
    assert client.get("/api/v1/probe").status_code == 429
    _assert_headers(client.get("/api/v1/templates"), 10, 9)


def test_bad_enabled_flag_names_the_variable():
    from appfactory import config

    with pytest.raises(config.ConfigError, match="RATELIMIT_ENABLED"):
        config.load({"RATELIMIT_ENABLED": "maybe"})
    assert config.load({"RATELIMIT_ENABLED": "off"})["RATELIMIT_ENABLED"] is False


def test_frozen_redis_costs_one_timeout_per_retry_interval(make_app):
    server = RedisServer().start()
    try:
        app = make_app(
            REDIS_URL=server.url, RATE_LIMIT_PER_MINUTE=100, REDIS_RETRY_AFTER_S=1, WEB_CONCURRENCY=2
        )
        client = app.test_client()
        assert client.get("/api/v1/nothing").headers["X-RateLimit-Limit"] == "100"
        server.freeze()
        started = time.monotonic()
        limits = [client.get("/api/v1/nothing").headers["X-RateLimit-Limit"] for _ in range(20)]
        # One call waits for the socket timeout (250 ms), the others skip Redis while it backs off.
        assert time.monotonic() - started < 2
        assert set(limits) == {"50"}  # this worker's share of two
        assert app.extensions["ratelimit"].mode == "memory-fallback"
        server.thaw()
        time.sleep(1.1)
        assert client.get("/api/v1/nothing").headers["X-RateLimit-Limit"] == "100"
        assert app.extensions["ratelimit"].mode == "redis"
    finally:
        server.close()


def test_limits_resolved_once_still_follow_each_apps_settings(make_app):
    small, large = make_app(RATE_LIMIT_PER_MINUTE=2), make_app(RATE_LIMIT_AI_PER_MINUTE=5)
    for _ in range(2):  # interleaved: an answer remembered for one app must not leak into the other
        for app, path, limit, policy in (
            (small, "/api/v1/templates", 2, "default"),
            (large, "/api/v1/templates", 3, "default"),
            (large, "/api/v1/ai/generate?prompt=x", 5, "ai"),
            (small, "/api/v1/ai/generate?prompt=x", 2, "default"),
        ):
            response = app.test_client().get(path)
            assert response.headers["X-RateLimit-Limit"] == str(limit), (path, limit)
            assert response.headers["RateLimit-Policy"].startswith(f'"{policy}"')
    assert "X-RateLimit-Limit" not in small.test_client().get("/health/live").headers


def test_plain_routes_use_the_plan_and_decorated_views_flask_limiters_check(make_app, monkeypatch):
    from flask_limiter import Limiter

    general = []
    check = Limiter._check_request_limit

    def counted(self, *args, **kwargs):
        general.append(request.path)
        return check(self, *args, **kwargs)

    monkeypatch.setattr(Limiter, "_check_request_limit", counted)
    app = make_app(RATE_LIMIT_PER_MINUTE=2, RATE_LIMIT_AI_PER_MINUTE=1)
    _add_probe(app)
    client = app.test_client()
    planned = [client.get("/api/v1/templates") for _ in range(3)]
    assert [r.status_code for r in planned] == [200, 200, 429]
    _assert_headers(planned[1], 2, 0)
    assert planned[2].get_json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in planned[2].headers
    assert general == []  # answered from the plan: Flask-Limiter's own check never ran
    decorated = [client.get("/api/v1/probe") for _ in range(2)]
    assert [r.status_code for r in decorated] == [200, 429]
    assert "/api/v1/probe" in general  # a decorated view goes through Flask-Limiter's check
