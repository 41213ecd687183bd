"""A cached view is keyed on its parsed query, never on how the query string was spelled (real Redis)."""

from tests.support.services import REDIS_URL, require_redis

# Eight spellings of the first page of 20, the defaults.
ONE_PAGE = [
    "",
    "?limit=20",
    "?limit=020",
    "?limit=%2B20",
    "?limit=20.0",
    "?limit=%32%30",
    "?offset=0&limit=20",
    "?limit=20&offset=00",
]


def _entries(app) -> list[bytes]:
    """The templates list's entries in Redis."""
    client = require_redis(REDIS_URL)
    try:
        return list(client.scan_iter(match=f"{app.config['CACHE_NAMESPACE']}:cache:templates:*"))
    finally:
        client.close()


def test_every_spelling_of_one_page_is_one_entry(shared_app, shared_client):
    shared_client.post("/api/v1/templates", json={"name": "t", "body": "b"})
    answers = [shared_client.get(f"/api/v1/templates{query}") for query in ONE_PAGE]
    assert [r.status_code for r in answers] == [200] * len(ONE_PAGE)
    assert [r.headers["X-Cache"] for r in answers] == ["MISS"] + ["HIT"] * (len(ONE_PAGE) - 1)
    assert all(r.get_json() == answers[0].get_json() for r in answers)
    assert len(_entries(shared_app)) == 1


def test_refused_spellings_store_nothing_and_other_pages_their_own(shared_app, shared_client):
    for query in ("?limit=abc", "?limit=0", "?limit=20&limit=20", "?limit=20&colour=red", "?limit=-0"):
        response = shared_client.get(f"/api/v1/templates{query}")
        assert response.status_code == 422, query
    assert _entries(shared_app) == []
    for query in ("?limit=2", "?limit=2&offset=1", "?limit=02&offset=01"):
        assert shared_client.get(f"/api/v1/templates{query}").status_code == 200
    assert len(_entries(shared_app)) == 2
