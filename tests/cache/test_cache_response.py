"""`cache_response` and `invalidate_cache` as SPEC §6 shows them, on SimpleCache and on Redis."""

from __future__ import annotations

import functools

import pytest
import redis

from appfactory.cache import cache_response, invalidate_cache
from tests.conftest import key_namespace
from tests.support.services import REDIS_URL, delete_namespace, require_redis


@pytest.fixture(params=["simple", "redis"])
def app(request, new_app):
    namespace = key_namespace()
    redis_url = None
    if request.param == "redis":
        require_redis().close()
        redis_url = REDIS_URL
    yield new_app(REDIS_URL=redis_url, CACHE_NAMESPACE=namespace)
    if request.param == "redis":
        with require_redis() as client:
            delete_namespace(client, namespace)


def _entries(app, prefix: str) -> list[str]:
    return sorted(key for key in app.extensions["response_cache"].store.keys(prefix))


def test_a_function_is_cached_on_its_arguments(app):
    calls = []

    @cache_response(ttl=600, key_prefix="templates")
    def page(limit: int, offset: int = 0) -> dict:
        calls.append((limit, offset))
        return {"limit": limit, "offset": offset, "call": len(calls)}

    with app.app_context():
        assert page(20) == page(20) == {"limit": 20, "offset": 0, "call": 1}
        assert page(20, offset=5)["call"] == 2
        assert page(20, offset=5)["call"] == 2
        assert len(_entries(app, "templates")) == 2
        assert invalidate_cache("templates") == 2
        assert page(20)["call"] == 3
    with app.test_request_context("/elsewhere?x=1"):  # in a request, but not its view: arguments only
        assert page(20)["call"] == 3


def test_a_view_is_cached_on_its_path_and_normalized_query(app):
    calls = []

    def logged(view):  # another decorator above it: still recognised as the request's view
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            return view(*args, **kwargs)

        return wrapper

    @app.get("/things/<int:thing_id>")
    @logged
    @cache_response(ttl=600, key_prefix="things")
    def thing(thing_id: int) -> dict:
        from flask import request

        calls.append(thing_id)
        return {"id": thing_id, "args": request.args.to_dict(flat=False), "call": len(calls)}

    client = app.test_client()
    first = client.get("/things/1?b=2&a=1")
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    assert first.get_json() == {"id": 1, "args": {"a": ["1"], "b": ["2"]}, "call": 1}
    for same in ("/things/1?a=1&b=2", "/things/1?a=%31&b=2"):  # reordered, percent-encoded
        again = client.get(same)
        assert again.headers["X-Cache"] == "HIT" and again.get_json() == first.get_json(), same
    assert client.get("/things/1?a=2&b=2").get_json()["call"] == 2  # another query: its own entry
    assert client.get("/things/1").get_json()["call"] == 3
    assert client.get("/things/2?a=1&b=2").get_json()["call"] == 4  # another path
    assert len(_entries(app, "things")) == 4
    with app.test_request_context("/elsewhere"):
        assert thing(7)["call"] == 5  # called as a function: keyed on its argument, cached
        assert thing(7)["call"] == 5
        assert invalidate_cache("things") == 5


def test_a_view_that_fails_is_not_stored(app):
    @app.get("/missing")
    @cache_response(ttl=600, key_prefix="missing")
    def missing():
        return {"error": {"code": "not_found", "message": "no"}}, 404

    client = app.test_client()
    assert [client.get("/missing").status_code for _ in range(2)] == [404, 404]
    assert _entries(app, "missing") == []


def test_invalidate_cache_deletes_the_matching_keys_and_says_how_many(app, monkeypatch):
    @cache_response(ttl=600, key_prefix="user", key=lambda user_id, part: f"{user_id}:{part}")
    def section(user_id: int, part: str) -> dict:
        return {"user": user_id, "part": part}

    def never(*args, **kwargs):
        raise AssertionError("KEYS or FLUSHDB on the shared Redis")

    for command in ("keys", "flushdb", "flushall"):
        monkeypatch.setattr(redis.Redis, command, never)
    with app.app_context():
        for user_id, part in [(123, "profile"), (123, "settings"), (1234, "profile"), (12, "profile")]:
            section(user_id, part)
        assert invalidate_cache("user", pattern="123:*") == 2
        assert _entries(app, "user") == ["user:1234:profile", "user:12:profile"]
        assert invalidate_cache("user", pattern="123:*") == 0
        assert invalidate_cache("user", pattern="12*") == 2  # a free glob: SCAN on Redis
        assert _entries(app, "user") == []
