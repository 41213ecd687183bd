"""The early answer: a fresh entry answers before the view, as the view would; the rest is the view's."""

from __future__ import annotations

import functools
import time

from appfactory.cache import flow as cacheflow
from tests.support.services import RedisServer

PATH = "/api/v1/ai/generate?prompt=read-ahead"


def test_bad_input_is_still_answered_by_the_view(new_app):
    server = RedisServer().start()
    client = new_app(REDIS_URL=server.url).test_client()
    try:
        response = client.get("/api/v1/ai/generate?prompt=x&max_tokens=nope")
        assert response.status_code == 422
        assert response.get_json()["error"]["field"] == "max_tokens"
        assert "X-RateLimit-Remaining" in response.headers
    finally:
        server.close()


def _counting_view(app) -> list[int]:
    """Count the calls of the GET view (the early answer must not reach it)."""
    calls: list[int] = []
    view = app.view_functions["ai.generate_from_query"]

    @functools.wraps(view)  # keeps the view's mark: a fresh entry still answers before it
    def counted():
        calls.append(1)
        return view()

    app.view_functions["ai.generate_from_query"] = counted
    return calls


def test_a_fresh_entry_answers_before_the_view_as_the_view_would(new_app):
    server = RedisServer().start()
    app = new_app(REDIS_URL=server.url)
    calls = _counting_view(app)
    client = app.test_client()
    try:
        miss = client.get(PATH)
        assert (miss.headers["X-Cache"], len(calls)) == ("MISS", 1)
        hit = client.get(PATH)
        assert (hit.headers["X-Cache"], len(calls)) == ("HIT", 1)
        spent_none = {**miss.get_json()["usage"], "upstream_tokens": 0}
        assert hit.get_json() == {**miss.get_json(), "cached": True, "usage": spent_none}
        assert "cache;dur=" in hit.headers["Server-Timing"]
        assert app.extensions["response_cache"].counters.totals()["ai"]["hit"] == 1
        # The same request without the rate limiter's round trip goes through the view: same body.
        by_view = new_app(
            REDIS_URL=server.url, RATELIMIT_ENABLED=False, CACHE_NAMESPACE=app.config["CACHE_NAMESPACE"]
        )
        assert by_view.test_client().get(PATH).get_json() == hit.get_json()
    finally:
        server.close()


def test_a_stale_entry_is_left_to_the_view(new_app, monkeypatch):
    server = RedisServer().start()
    app = new_app(REDIS_URL=server.url, AI_CACHE_TTL=10)
    calls = _counting_view(app)
    client = app.test_client()
    try:
        assert client.get(PATH).headers["X-Cache"] == "MISS"
        later = time.time() + 12  # past the soft expiry, before the hard one
        monkeypatch.setattr(cacheflow, "now", lambda: later)
        refreshed = client.get(PATH)
        assert (refreshed.headers["X-Cache"], len(calls)) == ("MISS", 2)  # the view refreshed it
        assert refreshed.get_json()["cached"] is False
    finally:
        server.close()
