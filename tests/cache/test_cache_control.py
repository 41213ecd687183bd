"""A request's Cache-Control (no-cache, no-store, max-age, only-if-cached) and the Cache-Status header
(RFC 9211) on every cacheable endpoint, in-process on the machine's Redis (docs/cache.md)."""

from __future__ import annotations

import re
import threading
import time

import pytest

from appfactory.cache import flow as cacheflow
from tests.support.services import REDIS_URL, free_port, require_redis
from tests.support.upstream import FakeModel

GENERATE = "/api/v1/ai/generate"
HIT = re.compile(r"aigen; hit; ttl=(\d+)")


@pytest.fixture
def model():
    with FakeModel() as fake:
        yield fake


@pytest.fixture
def client(new_app, model):
    """Generation through FakeModel (its `calls` are the model calls) on the shared Redis cache."""
    require_redis().close()
    app = new_app(REDIS_URL=REDIS_URL, AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_CACHE_TTL=60)
    return app.test_client()


def _get(client, prompt: str, control: str | None = None):
    headers = {"Cache-Control": control} if control else {}
    return client.get(f"{GENERATE}?prompt={prompt}", headers=headers)


def _post(client, prompt: str, control: str | None = None):
    headers = {"Cache-Control": control} if control else {}
    return client.post(GENERATE, json={"prompt": prompt}, headers=headers)


def _status(response) -> tuple[str, str]:
    return response.headers["X-Cache"], response.headers["Cache-Status"]


@pytest.mark.parametrize("ask", [_get, _post])
def test_a_miss_stores_and_a_hit_tells_the_freshness_left(client, model, ask):
    miss = ask(client, "plain")
    assert _status(miss) == ("MISS", "aigen; fwd=uri-miss; stored")
    hit = ask(client, "plain")
    assert hit.headers["X-Cache"] == "HIT"
    ttl = int(HIT.fullmatch(hit.headers["Cache-Status"]).group(1))
    assert 50 <= ttl <= 66  # AI_CACHE_TTL=60 ±10% jitter, a moment later
    assert model.calls == 1


@pytest.mark.parametrize("ask", [_get, _post])
def test_no_cache_answers_fresh_and_stores_it(client, model, ask):
    first = ask(client, "again")
    fresh = ask(client, "again", "no-cache")  # GET: the early answer must leave it to the view
    assert _status(fresh) == ("MISS", "aigen; fwd=request; stored")
    assert fresh.get_json()["cached"] is False
    assert fresh.get_json()["generated_at"] != first.get_json()["generated_at"]
    assert model.calls == 2
    after = ask(client, "again")
    assert after.headers["X-Cache"] == "HIT"
    assert after.get_json()["generated_at"] == fresh.get_json()["generated_at"]  # the fresh one stored
    assert model.calls == 2


@pytest.mark.parametrize("ask", [_get, _post])
def test_no_store_neither_reads_nor_stores(client, model, ask):
    unstored = ask(client, "private", "no-store")
    assert _status(unstored) == ("MISS", "aigen; fwd=request")
    assert _status(ask(client, "private")) == ("MISS", "aigen; fwd=uri-miss; stored")  # nothing stored
    assert _status(ask(client, "private", "no-store")) == ("MISS", "aigen; fwd=request")  # nor read
    assert model.calls == 3


@pytest.mark.parametrize("ask", [_get, _post])
def test_max_age_refuses_an_older_entry(client, model, ask, monkeypatch):
    stored = ask(client, "aged")
    later = time.time() + 20  # the entry is 20 s old, still fresh (TTL 60)
    monkeypatch.setattr(cacheflow, "now", lambda: later)
    young_enough = ask(client, "aged", "max-age=30")
    assert young_enough.headers["X-Cache"] == "HIT"
    assert HIT.fullmatch(young_enough.headers["Cache-Status"])
    assert model.calls == 1
    too_old = ask(client, "aged", "max-age=10")  # GET: the early answer must not serve it
    assert _status(too_old) == ("MISS", "aigen; fwd=request; stored")
    assert too_old.get_json()["generated_at"] != stored.get_json()["generated_at"]
    assert model.calls == 2
    assert ask(client, "aged", "max-age=10").headers["X-Cache"] == "HIT"  # the new entry is 0 s old


@pytest.mark.parametrize("ask", [_get, _post])
def test_only_if_cached_is_504_without_a_fresh_entry_and_never_computes(client, model, ask, monkeypatch):
    absent = ask(client, "cached-only", "only-if-cached")
    assert absent.status_code == 504
    assert absent.get_json()["error"]["code"] == "not_cached"
    assert _status(absent) == ("MISS", "aigen; detail=only-if-cached")
    assert model.calls == 0
    ask(client, "cached-only")
    present = ask(client, "cached-only", "only-if-cached")
    assert (present.status_code, present.headers["X-Cache"]) == (200, "HIT")
    later = time.time() + 70  # past the soft expiry: stale is not fresh
    monkeypatch.setattr(cacheflow, "now", lambda: later)
    assert ask(client, "cached-only", "only-if-cached").status_code == 504
    assert model.calls == 1


def test_a_stale_entry_served_while_another_refreshes_it(client, model, monkeypatch):
    _get(client, "old")
    later = time.time() + 70  # past the soft expiry (60 s ±10%), before the hard one
    monkeypatch.setattr(cacheflow, "now", lambda: later)
    app = client.application
    state = app.extensions["response_cache"]
    with app.test_request_context(f"{GENERATE}?prompt=old"):
        key = app.view_functions["ai.generate_from_query"].fresh_hit[0]()
    token = state.store.acquire(key, 5)  # another worker is refreshing it
    try:
        stale = _get(client, "old")
    finally:
        state.store.release(key, token)
    assert _status(stale) == ("STALE", "aigen; fwd=stale")
    refreshed = _get(client, "old")
    assert _status(refreshed) == ("MISS", "aigen; fwd=stale; stored")
    assert model.calls == 2


def test_two_concurrent_no_cache_requests_make_one_model_call(new_app):
    require_redis().close()
    with FakeModel(delay=0.5) as model:
        app = new_app(REDIS_URL=REDIS_URL, AI_PROVIDER="openai", AI_BASE_URL=model.url)
        first = _get(app.test_client(), "together")
        answers = []

        def ask() -> None:
            answers.append(_get(app.test_client(), "together", "no-cache"))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert model.calls == 2  # the first fill, then one for both fresh requests
    assert sorted(response.headers["Cache-Status"] for response in answers) == [
        "aigen; fwd=request; collapsed",
        "aigen; fwd=request; stored",
    ]
    texts = {response.get_json()["generated_at"] for response in answers}
    assert len(texts) == 1 and first.get_json()["generated_at"] not in texts


def test_redis_unavailable_is_a_bypass(new_app):
    app = new_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get(f"{GENERATE}?prompt=down")
    assert response.status_code == 200
    assert _status(response) == ("BYPASS", "aigen; fwd=bypass; detail=redis-unavailable")


def _signed_up(client) -> tuple[int, dict]:
    user = client.post("/api/v1/users", json={"email": "ada@example.com", "name": "Ada"}).get_json()
    return user["id"], {"Authorization": f"Bearer {user['api_key']}"}


def test_the_template_list_honours_cache_control(new_app):
    require_redis().close()
    client = new_app(REDIS_URL=REDIS_URL).test_client()
    _, key = _signed_up(client)
    path = "/api/v1/templates"
    absent = client.get(path, headers={**key, "Cache-Control": "only-if-cached"})
    assert (absent.status_code, absent.get_json()["error"]["code"]) == (504, "not_cached")
    assert _status(client.get(path, headers=key)) == ("MISS", "aigen; fwd=uri-miss; stored")
    assert HIT.fullmatch(client.get(path, headers=key).headers["Cache-Status"])
    # The list is invalidated on writes; a fresh one is read anyway with no-cache.
    fresh = client.get(path, headers={**key, "Cache-Control": "no-cache"})
    assert _status(fresh) == ("MISS", "aigen; fwd=request; stored")
    assert _status(client.get(path, headers={**key, "Cache-Control": "no-store"})) == (
        "MISS",
        "aigen; fwd=request",
    )


def test_a_user_profile_read_honours_cache_control(new_app):
    require_redis().close()
    client = new_app(REDIS_URL=REDIS_URL).test_client()
    user_id, key = _signed_up(client)
    path = f"/api/v1/users/{user_id}"
    absent = client.get(path, headers={**key, "Cache-Control": "only-if-cached"})
    assert (absent.status_code, absent.get_json()["error"]["code"]) == (504, "not_cached")
    assert _status(client.get(path, headers=key)) == ("MISS", "aigen; fwd=uri-miss; stored")
    hit = client.get(path, headers={**key, "Cache-Control": "max-age=30"})
    assert hit.headers["X-Cache"] == "HIT" and HIT.fullmatch(hit.headers["Cache-Status"])
    fresh = client.get(path, headers={**key, "Cache-Control": "no-cache"})
    assert _status(fresh) == ("MISS", "aigen; fwd=request; stored")


def _streamed(client, prompt: str, control: str | None = None):
    """A streamed request, read to its end and closed (as a client that got it all)."""
    headers = {"Cache-Control": control} if control else {}
    response = client.post(GENERATE, json={"prompt": prompt, "stream": True}, headers=headers)
    response.get_data()
    response.close()
    return response


def test_streamed_requests_honour_cache_control(client, model):
    assert _status(_streamed(client, "flowing")) == ("MISS", "aigen; fwd=uri-miss")
    hit = _streamed(client, "flowing")
    assert hit.headers["X-Cache"] == "HIT" and HIT.fullmatch(hit.headers["Cache-Status"])
    assert b"event: done" in hit.get_data() and model.calls == 1

    fresh = _streamed(client, "flowing", "no-cache")
    assert _status(fresh) == ("MISS", "aigen; fwd=request") and model.calls == 2
    assert _streamed(client, "flowing", "max-age=3600").headers["X-Cache"] == "HIT"

    unstored = _streamed(client, "unstored", "no-store")
    assert unstored.headers["X-Cache"] == "MISS" and b"event: done" in unstored.get_data()
    assert _streamed(client, "unstored").headers["X-Cache"] == "MISS"  # nothing was stored
    assert model.calls == 4

    absent = _streamed(client, "never asked", "only-if-cached")
    assert (absent.status_code, absent.get_json()["error"]["code"]) == (504, "not_cached")
    chat = {"model": "default", "messages": [{"role": "user", "content": "never asked"}], "stream": True}
    refused = client.post("/v1/chat/completions", json=chat, headers={"Cache-Control": "only-if-cached"})
    assert refused.status_code == 504 and refused.get_json()["error"]["code"] == "not_cached"
    assert model.calls == 4
