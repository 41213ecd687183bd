"""The model server slow, flaky, throttling, silent or changed: retries, the breaker, error kinds."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from tests.support.services import REDIS_URL, require_redis
from tests.support.upstream import FakeModel

GENERATE = "/api/v1/ai/generate"


@pytest.fixture
def make_client(new_app):
    return lambda **overrides: new_app(**overrides).test_client()


def _errors(kind: str) -> float:
    return REGISTRY.get_sample_value("aigen_upstream_errors_total", {"kind": kind}) or 0.0


def test_a_server_failing_once_per_prompt_is_retried_and_every_request_succeeds(make_client):
    with FakeModel(status=lambda prompt, before: 503 if before == 0 else 200) as model:
        client = make_client(AI_PROVIDER="openai", AI_BASE_URL=model.url)
        responses = [client.get(f"{GENERATE}?prompt=flaky-{n}") for n in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert model.calls == 8  # each prompt: one failure, one success


def test_a_throttling_server_ends_in_503_with_its_retry_after(make_client):
    before = _errors("throttled")
    with FakeModel(status=429, headers={"Retry-After": "1"}) as model:
        client = make_client(AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_RETRIES=2)
        started = time.monotonic()
        response = client.get(f"{GENERATE}?prompt=throttled")
        took = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "upstream_busy"
    assert response.headers["Retry-After"] == "1"
    assert model.calls == 3 and took >= 2.0  # two retries, each after the server's Retry-After
    assert _errors("throttled") == before + 1


def test_retries_stop_at_the_timeout(make_client):
    with FakeModel(status=429, headers={"Retry-After": "3"}) as model:
        client = make_client(AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_RETRIES=5, AI_TIMEOUT_S=1)
        started = time.monotonic()
        response = client.get(f"{GENERATE}?prompt=throttled")
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503 and model.calls == 1


def test_a_silent_server_opens_the_breaker_and_then_requests_are_answered_at_once(make_client, silent_server):
    client = make_client(
        AI_PROVIDER="openai",
        AI_BASE_URL=f"http://127.0.0.1:{silent_server}/v1",
        AI_TIMEOUT_S=0.3,
        AI_BREAKER_FAILURES=2,
        AI_BREAKER_COOLDOWN_S=30,
    )
    timeouts = [client.get(f"{GENERATE}?prompt=silent-{n}") for n in range(2)]
    assert [r.status_code for r in timeouts] == [504, 504]
    started = time.monotonic()
    refused = [client.get(f"{GENERATE}?prompt=silent-more-{n}") for n in range(5)]
    assert time.monotonic() - started < 0.5  # no request waits for the silent server any more
    for response in refused:
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "upstream_unavailable"
        assert 25 <= int(response.headers["Retry-After"]) <= 30
    health = client.get("/health").get_json()
    assert health["upstream"]["breaker"] == "open"


def test_the_breaker_lets_one_probe_through_after_its_cool_down_and_closes(make_client):
    with FakeModel(status=lambda prompt, before: 503 if prompt.startswith("down") else 200) as model:
        client = make_client(
            AI_PROVIDER="openai",
            AI_BASE_URL=model.url,
            AI_RETRIES=0,
            AI_BREAKER_FAILURES=1,
            AI_BREAKER_COOLDOWN_S=0.3,
        )
        assert client.get(f"{GENERATE}?prompt=down").status_code == 503
        assert client.get(f"{GENERATE}?prompt=up-1").get_json()["error"]["code"] == "upstream_unavailable"
        time.sleep(0.35)
        assert client.get(f"{GENERATE}?prompt=up-2").status_code == 200  # the probe
        assert client.get(f"{GENERATE}?prompt=up-3").status_code == 200
        assert client.get("/health").get_json()["upstream"]["breaker"] == "closed"
    assert model.calls == 3


def test_a_wrong_key_and_an_unknown_model_are_told_apart_in_the_metrics(make_client):
    auth, unknown = _errors("authentication"), _errors("unknown_model")
    with FakeModel(status=401) as model:
        assert (
            make_client(AI_PROVIDER="openai", AI_BASE_URL=model.url).get(f"{GENERATE}?prompt=k").status_code
            == 502
        )
    with FakeModel() as model:
        wrong = model.url.replace("/v1", "/nowhere")
        assert (
            make_client(AI_PROVIDER="openai", AI_BASE_URL=wrong).get(f"{GENERATE}?prompt=k").status_code
            == 502
        )
    assert (_errors("authentication"), _errors("unknown_model")) == (auth + 1, unknown + 1)


def test_the_cache_key_names_the_server_that_answered(new_app):
    require_redis()
    with FakeModel() as first, FakeModel() as second:
        one = new_app(AI_PROVIDER="openai", AI_BASE_URL=first.url, REDIS_URL=REDIS_URL)
        namespace = one.config["CACHE_NAMESPACE"]
        other = new_app(
            AI_PROVIDER="openai", AI_BASE_URL=second.url, REDIS_URL=REDIS_URL, CACHE_NAMESPACE=namespace
        )
        assert one.test_client().get(f"{GENERATE}?prompt=same").headers["X-Cache"] == "MISS"
        assert one.test_client().get(f"{GENERATE}?prompt=same").headers["X-Cache"] == "HIT"
        assert other.test_client().get(f"{GENERATE}?prompt=same").headers["X-Cache"] == "MISS"
    assert (first.calls, second.calls) == (1, 1)


def test_beyond_the_bound_a_generation_is_503_upstream_busy_at_once(make_client):
    from concurrent.futures import ThreadPoolExecutor

    with FakeModel(delay=1.0) as model:
        client_app = make_client(
            AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_MAX_CONCURRENCY=2, AI_QUEUE_WAIT_MS=20
        )
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda n: client_app.get(f"{GENERATE}?prompt=burst-{n}"), range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 503, 503, 503, 503]
    for response in responses:
        if response.status_code == 503:
            assert response.get_json()["error"]["code"] == "upstream_busy"
            assert response.headers["Retry-After"] == "1"
    assert model.calls == 2


def test_a_generation_holds_no_database_connection_while_it_waits_on_the_model(postgres):
    """Every request reads its key from the database, then waits 1 s on the model: with two pooled
    connections and a 0.3 s pool wait, ten at once are all answered only if the wait holds none."""
    from concurrent.futures import ThreadPoolExecutor

    from appfactory import create_app
    from tests.conftest import base_overrides
    from tests.support.keys import bearer, issue_key

    keys = [bearer(issue_key(postgres.url, admin=False)) for _ in range(10)]
    with FakeModel(delay=1.0) as model:
        app = create_app(
            base_overrides(
                DATABASE_URL=postgres.url,
                AI_PROVIDER="openai",
                AI_BASE_URL=model.url,
                AI_ALLOW_ANONYMOUS=False,
                DB_POOL_SIZE=2,
                DB_MAX_OVERFLOW=0,
                DB_POOL_TIMEOUT=0.3,
            )
        )
        try:
            client = app.test_client()
            with ThreadPoolExecutor(10) as pool:
                responses = list(
                    pool.map(lambda n: client.get(f"{GENERATE}?prompt=held-{n}", headers=keys[n]), range(10))
                )
        finally:
            app.extensions["db"].dispose()
    assert [r.status_code for r in responses] == [200] * 10, [r.get_json() for r in responses]
    assert model.calls == 10
