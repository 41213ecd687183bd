"""cache_call, invalidate_cache, single flight, stale serving and the CLI, on SimpleCache and Redis."""

import threading
import time

import pytest

from appfactory.cache import cache_call, invalidate_cache
from appfactory.cache import flow as cacheflow
from appfactory.web.errors import ApiError, as_api_error
from tests.conftest import key_namespace
from tests.support.services import REDIS_URL, RedisServer, delete_namespace, free_port, require_redis


def _delete_namespace(namespace: str) -> None:
    with require_redis() as client:
        delete_namespace(client, namespace)


@pytest.fixture
def redis():
    with require_redis() as client:
        yield client


@pytest.fixture(params=["simple", "redis"])
def backend(request):
    return request.param


@pytest.fixture
def make_app(new_app, backend):
    """Apps on the chosen backend that share one namespace, like workers of one service."""
    namespace = key_namespace()
    redis_url = None
    if backend == "redis":
        require_redis().close()
        redis_url = REDIS_URL
    yield lambda **overrides: new_app(REDIS_URL=redis_url, CACHE_NAMESPACE=namespace, **overrides)
    if backend == "redis":
        _delete_namespace(namespace)


@pytest.fixture
def app(make_app):
    return make_app()


def _counted(ttl=60, prefix="calc", **options):
    calls = []

    @cache_call(ttl=ttl, key_prefix=prefix, **options)
    def compute(a, b=0):
        calls.append((a, b))
        return {"args": [a, b], "call": len(calls)}

    return compute, calls


def test_function_results_are_keyed_on_their_arguments(app):
    compute, calls = _counted()
    with app.app_context():
        assert compute(1, b=2) == compute(1, b=2) == {"args": [1, 2], "call": 1}
        assert compute(1, 2)["call"] == 2  # positional and keyword are different calls
        assert compute(2, b=1)["call"] == 3
        assert compute(1, b=2)["call"] == 1
    assert len(calls) == 3


def test_argument_keys_tell_equal_values_of_other_types_apart(app):
    from appfactory.cache.decorators import _digest

    odd = [(2**70,), ({1: "integer key"},), ("lone \ud800 surrogate",)]  # orjson refuses these
    for args in [(1,), (True,), (1.0,), ("1",), ("Zoë",), *odd]:
        assert _digest(args, {}, False) == _digest(args, {}, False)
    digests = {_digest(args, {}, False) for args in [(1,), (True,), (1.0,), ("1",), *odd]}
    assert len(digests) == 7
    assert _digest((), {"a": 1, "b": 2}, False) == _digest((), {"b": 2, "a": 1}, False)


def test_keys_are_namespaced_and_explicit(app, backend, request):
    compute, _ = _counted(prefix="user", key=lambda a, b=0: f"{a}:profile")
    with app.app_context():
        compute(7)
        store = app.extensions["response_cache"].store
        assert list(store.keys()) == ["user:7:profile"]
    if backend == "redis":
        namespace = app.config["CACHE_NAMESPACE"]
        redis = request.getfixturevalue("redis")
        assert redis.exists(f"{namespace}:cache:user:7:profile") == 1


@pytest.mark.parametrize("prefix", ["", "a:b"])
def test_prefix_must_be_a_plain_name(prefix):
    with pytest.raises(ValueError, match="key_prefix"):
        cache_call(key_prefix=prefix)


def test_exceptions_are_never_cached(app):
    calls = []

    @cache_call(ttl=60, key_prefix="boom")
    def flaky():
        calls.append(1)
        raise ApiError(502, "upstream failed")

    with app.app_context():
        for _ in range(2):
            with pytest.raises(ApiError):
                flaky()
        assert list(app.extensions["response_cache"].store.keys()) == []
    assert len(calls) == 2


def test_invalidate_deletes_exactly_the_matching_keys(app):
    compute, _ = _counted(prefix="user", key=lambda a, b=0: f"{a}:{b}")
    other, _ = _counted(prefix="users")
    with app.app_context():
        for user_id, part in [(1, "profile"), (1, "settings"), (12, "profile"), (2, "profile")]:
            compute(user_id, part)
        other(1)
        assert invalidate_cache("user", pattern="1:*") == 2
        remaining = sorted(app.extensions["response_cache"].store.keys())
        assert remaining[:2] == ["user:12:profile", "user:2:profile"]
        assert remaining[2].startswith("users:") and len(remaining) == 3
        assert invalidate_cache("user", pattern="1:*") == 0
        assert invalidate_cache("user") == 2
        assert [key.split(":")[0] for key in app.extensions["response_cache"].store.keys()] == ["users"]


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_on_redis_invalidation_reads_the_indexes_and_free_globs_still_scan(app, redis):
    compute, _ = _counted(prefix="user", key=lambda a, b=0: f"{a}:{b}", ttl=60)
    namespace = app.config["CACHE_NAMESPACE"]
    with app.app_context():
        for user_id, part in [(1, "profile"), (1, "settings"), (12, "profile")]:
            compute(user_id, part)
        store = app.extensions["response_cache"].store
        assert store.index_of("user", "1:*") == f"{namespace}:index:user:1"
        assert store.index_of("user", "1*") is None  # a free glob: SCAN
        listed = redis.zrange(f"{namespace}:index:user", 0, -1)
        assert set(listed) == {b"user:1:profile", b"user:1:settings", b"user:12:profile"}
        assert 60 < redis.ttl(f"{namespace}:index:user:1") <= 75  # as long as its longest entry
        # An entry that expired is forgotten by the index at the next write under it.
        redis.zadd(f"{namespace}:index:user", {"user:9:gone": time.time() - 1})
        compute(2, "profile")
        assert redis.zscore(f"{namespace}:index:user", "user:9:gone") is None
        assert invalidate_cache("user", pattern="1*") == 3  # SCAN: 1:profile, 1:settings, 12:profile
        assert [key for key in store.keys()] == ["user:2:profile"]
        assert invalidate_cache("user", pattern="2:*") == 1
        assert redis.zcard(f"{namespace}:index:user:2") == 0


def test_ttls_are_jittered_and_the_hard_ttl_is_longer():
    samples = [cacheflow.expiries(100) for _ in range(200)]
    softs = [soft - time.time() for soft, _ in samples]
    assert all(89 <= soft <= 110.5 for soft in softs)
    assert max(softs) - min(softs) > 5
    assert all(hard >= soft + 10 for (_, hard), soft in zip(samples, softs, strict=True))


def test_stale_entry_is_served_while_another_refreshes(app, monkeypatch):
    compute, calls = _counted(ttl=10)
    state = app.extensions["response_cache"]
    with app.test_request_context():
        assert compute(1)["call"] == 1
        later = time.time() + 12  # past the soft expiry, before the hard one
        monkeypatch.setattr(cacheflow, "now", lambda: later)
        key = next(iter(state.store.keys()))
        token = state.store.acquire(key, 5)  # another worker is refreshing
        outcome, value = state.fetch("calc", key, 10, lambda: pytest.fail("must not compute"))
        assert (outcome, value["call"]) == ("STALE", 1)
        state.store.release(key, token)
        assert compute(1)["call"] == 2  # this caller refreshes
        assert compute(1)["call"] == 2
    assert len(calls) == 2


def test_a_failed_refresh_serves_the_stale_value(app, monkeypatch):
    state = app.extensions["response_cache"]
    with app.test_request_context():
        state.fetch("calc", "calc:x", 10, lambda: "old")
        later = time.time() + 12
        monkeypatch.setattr(cacheflow, "now", lambda: later)

        def failing():
            raise ApiError(504, "timeout")

        assert state.fetch("calc", "calc:x", 10, failing) == ("STALE", "old")


def _concurrently(apps, count, fn):
    """Call `fn` from `count` threads released together, spread over `apps`; the outcomes."""
    gate = threading.Barrier(count)
    outcomes = []

    def call(app):
        with app.app_context():
            gate.wait()
            try:
                outcomes.append(fn())
            except Exception as exc:  # the status the service answers it with
                answer = as_api_error(exc)
                outcomes.append(answer.status if answer is not None else repr(exc))

    threads = [threading.Thread(target=call, args=(apps[i % len(apps)],)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


@pytest.fixture
def workers(make_app, backend):
    """Two apps on one namespace stand in for two workers with Redis; one app's threads otherwise."""
    return [make_app(), make_app()] if backend == "redis" else [make_app()]


def test_concurrent_misses_compute_once_across_apps(workers):
    calls = []

    @cache_call(ttl=60, key_prefix="slow")
    def slow():
        calls.append(1)
        time.sleep(0.3)
        return "value"

    assert _concurrently(workers, 8, slow) == ["value"] * 8
    assert len(calls) == 1


def test_concurrent_misses_share_the_owner_failure_once(workers):
    calls = []

    @cache_call(ttl=60, key_prefix="failing")
    def failing():
        calls.append(1)
        time.sleep(0.3)
        raise ApiError(504, "too slow")

    assert _concurrently(workers, 6, failing) == [504] * 6
    assert len(calls) == 1
    with workers[0].app_context(), pytest.raises(ApiError):
        failing()
    assert len(calls) == 2


def test_a_database_outage_met_by_the_owner_is_shared_with_those_waiting(workers):
    from sqlalchemy.exc import OperationalError

    calls = []

    @cache_call(ttl=60, key_prefix="database")
    def reading():
        calls.append(1)
        time.sleep(0.3)  # as a read waiting out DB_TIMEOUT_S would
        raise OperationalError("SELECT 1", {}, Exception("the database did not answer"))

    started = time.monotonic()
    assert _concurrently(workers, 6, reading) == [503] * 6  # database_unavailable, once for all
    assert len(calls) == 1 and time.monotonic() - started < 0.3 * 2


def test_templates_list_is_cached_and_every_write_invalidates_it(shared_client):
    assert shared_client.get("/api/v1/templates").headers["X-Cache"] == "MISS"
    assert shared_client.get("/api/v1/templates").headers["X-Cache"] == "HIT"
    # Keyed on the parsed query: the defaults spelt out are the same page (tests/cache/test_view_keys.py).
    assert shared_client.get("/api/v1/templates?offset=0&limit=20").headers["X-Cache"] == "HIT"
    assert shared_client.get("/api/v1/templates?offset=0&limit=5").headers["X-Cache"] == "MISS"
    assert shared_client.get("/api/v1/templates?limit=5&offset=0").headers["X-Cache"] == "HIT"
    created = shared_client.post("/api/v1/templates", json={"name": "a", "body": "b"}).get_json()
    listing = shared_client.get("/api/v1/templates")
    assert listing.headers["X-Cache"] == "MISS" and listing.get_json()["total"] == 1
    shared_client.patch(f"/api/v1/templates/{created['id']}", json={"body": "changed"})
    assert shared_client.get("/api/v1/templates").get_json()["items"][0]["body"] == "changed"
    shared_client.put(f"/api/v1/templates/{created['id']}", json={"name": "z", "body": "put"})
    assert shared_client.get("/api/v1/templates").get_json()["items"][0]["name"] == "z"
    shared_client.delete(f"/api/v1/templates/{created['id']}")
    assert shared_client.get("/api/v1/templates").get_json()["total"] == 0


def test_bad_query_on_a_cached_list_is_not_cached(client):
    assert client.get("/api/v1/templates?limit=abc").status_code == 422
    assert client.get("/api/v1/templates?limit=abc").status_code == 422


def test_user_profile_is_cached_and_writes_invalidate_it(shared_client):
    user = shared_client.post("/api/v1/users", json={"email": "ada@example.com", "name": "Ada"}).get_json()
    path = f"/api/v1/users/{user['id']}"
    assert shared_client.get(path).headers["X-Cache"] == "MISS"
    hit = shared_client.get(path)
    assert hit.headers["X-Cache"] == "HIT" and hit.get_json()["email"] == "ada@example.com"
    shared_client.patch(path, json={"name": "Ada L."})
    fresh = shared_client.get(path)
    assert fresh.headers["X-Cache"] == "MISS" and fresh.get_json()["name"] == "Ada L."
    shared_client.delete(path)
    assert shared_client.get(path).status_code == 404


def test_redis_down_serves_uncached_without_errors(new_app):
    server = RedisServer().start()
    app = new_app(REDIS_URL=server.url, REDIS_RETRY_AFTER_S=30)
    client = app.test_client()
    try:
        assert client.get("/api/v1/ai/generate?prompt=x").headers["X-Cache"] == "MISS"
        server.stop()
        responses = [client.get("/api/v1/ai/generate?prompt=x") for _ in range(3)]
        assert [r.status_code for r in responses] == [200] * 3
        assert [r.headers["X-Cache"] for r in responses] == ["BYPASS"] * 3
        assert client.get("/health").get_json()["cache"] == "bypass"
        with app.app_context():
            assert invalidate_cache("ai") == 0
    finally:
        server.close()


def _cli(app, *args, group="cache"):
    result = app.test_cli_runner().invoke(args=[group, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_stats_clear_invalidate_and_warm(app, tmp_path, backend):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first\nsecond\n\nsecond\n" + "x" * 5000 + "\n")
    output = _cli(app, "warm", "--prompts", str(prompts), group="ai")
    assert "2 prompts" in output and "2 computed" in output and "1 skipped" in output
    assert "2 already cached" in _cli(app, "warm", "--prompts", str(prompts), group="ai")
    assert app.test_client().get("/api/v1/ai/generate?prompt=first").headers["X-Cache"] == "HIT"
    stats = _cli(app, "stats")
    assert f"backend: {backend}" in stats
    row = next(line.split() for line in stats.splitlines() if line.startswith("ai "))
    assert row[1] == "2" and row[2] == "3" and row[4] == "2" and row[-1] == "60.0%"
    user, _ = _counted(prefix="user", key=lambda a, b=0: f"{a}:profile")
    with app.app_context():
        user(1)
        user(2)
        user(3)
    assert "deleted 1 entries" in _cli(app, "invalidate", "user", "--pattern", "1:*")
    scanned = _cli(app, "invalidate", "user", "--pattern", "[3]*")  # a free glob: no index lists it
    assert "deleted 1 entries" in scanned
    assert ("scanning Redis" in scanned) == (backend == "redis")  # the scan's progress bar
    assert "deleted 2 entries" in _cli(app, "clear", "--prefix", "ai")
    assert "deleted 1 entries" in _cli(app, "clear")
    assert "deleted 0 entries" in _cli(app, "clear")


def test_clear_leaves_keys_outside_the_namespace_alone(new_app, redis):
    app = new_app(REDIS_URL=REDIS_URL)
    namespace = app.config["CACHE_NAMESPACE"]
    outside = [f"{namespace}x:cache:ai:1", f"other-{namespace}:cache:ai:1", f"{namespace}:rl:client"]
    for key in outside:
        redis.set(key, "keep", ex=60)
    try:
        with app.app_context():
            _counted()[0](1)
        assert "deleted 1 entries" in _cli(app, "clear")
        assert redis.exists(*outside) == len(outside)
    finally:
        redis.unlink(*outside)
        _delete_namespace(namespace)


def test_frozen_redis_costs_one_timeout_per_back_off(new_app):
    """A Redis that accepts but never answers: one request pays the socket timeout, the rest bypass."""
    server = RedisServer().start()
    # The limiter has its own Redis handling; this test is about the cache's.
    app = new_app(REDIS_URL=server.url, REDIS_TIMEOUT_MS=500, REDIS_RETRY_AFTER_S=30, RATELIMIT_ENABLED=False)
    client = app.test_client()
    try:
        assert client.get("/api/v1/ai/generate?prompt=x").headers["X-Cache"] == "MISS"
        server.freeze()
        slow = 0
        for _ in range(6):
            started = time.perf_counter()
            response = client.get("/api/v1/ai/generate?prompt=x")
            slow += time.perf_counter() - started > 0.4
            assert (response.status_code, response.headers["X-Cache"]) == (200, "BYPASS")
        assert slow == 1
    finally:
        server.close()


def test_deleting_a_user_refreshes_the_templates_listing_their_ownership(app, client):
    from sqlalchemy import update

    from appfactory.db.models import templates

    user = client.post("/api/v1/users", json={"email": "o@example.com", "name": "O"}).get_json()
    template = client.post("/api/v1/templates", json={"name": "owned", "body": "b"}).get_json()
    with app.extensions["db"].begin() as conn:  # the template was the admin's: give it to the user
        conn.execute(update(templates).where(templates.c.id == template["id"]).values(owner_id=user["id"]))
    client.get("/api/v1/templates")
    assert client.get("/api/v1/templates").get_json()["items"][0]["owner_id"] == user["id"]
    client.delete(f"/api/v1/users/{user['id']}")
    assert client.get("/api/v1/templates").get_json()["items"][0]["owner_id"] is None


@pytest.mark.parametrize("command", [["stats"], ["clear"], ["invalidate", "ai"]])
def test_cli_says_when_redis_is_unavailable(new_app, command):
    app = new_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = app.test_cli_runner().invoke(args=["cache", *command])
    assert result.exit_code == 1
    assert "Redis is unavailable" in result.output and "Traceback" not in result.output
