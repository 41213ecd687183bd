"""A cached answer is never served to a caller the view would refuse: OPTIONS, HEAD and GET without a
key, on every route, after a key filled the cache (real Redis: the early answer of cache/early.py)."""

import re

import pytest
from werkzeug.exceptions import HTTPException

from tests.support.keys import bearer, issue_key
from tests.support.services import REDIS_URL, require_redis

ORIGIN = "http://app.example"
QUERY = "?prompt=only+for+key+holders"


@pytest.fixture(params=["no-cors", "cors"])
def filled(request, new_app):
    """A key-only app whose caches a key has filled: (app, the generated text, ids for the routes)."""
    require_redis(REDIS_URL).close()
    cors = ORIGIN if request.param == "cors" else None
    app = new_app(REDIS_URL=REDIS_URL, AI_ALLOW_ANONYMOUS=False, CORS_ORIGINS=cors)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issue_key(app.config['DATABASE_URL'])}"
    template_id = client.post("/api/v1/templates", json={"name": "t", "body": "b"}).get_json()["id"]
    user_id = client.post("/api/v1/users", json={"email": "u@example.com", "name": "U"}).get_json()["id"]
    for path in (f"/api/v1/ai/generate{QUERY}", "/api/v1/templates", f"/api/v1/users/{user_id}"):
        client.get(path)
        assert client.get(path).headers["X-Cache"] == "HIT", path
    text = client.get(f"/api/v1/ai/generate{QUERY}").get_json()["text"]
    return app, text, {"template_id": template_id, "user_id": user_id, "path": "index.html", "model_id": "m"}


def _paths(app, ids: dict) -> set[str]:
    """Every route's path with real ids, with and without the cached generation's query."""
    paths = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), rule.rule)
        paths |= {path, path + QUERY}
    return paths


def _needs_key(app, path: str, method: str) -> bool:
    """Whether the view `method path` reaches needs a key (False where no view serves it: 404, 405)."""
    try:
        endpoint, _args = app.url_map.bind("localhost").match(path.partition("?")[0], method)
    except HTTPException:
        return False
    return app.extensions["identity_required"][endpoint]


def test_no_cached_answer_without_a_key_on_any_route_or_method(filled):
    app, text, ids = filled
    client = app.test_client()
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    refused = set()
    for path in sorted(_paths(app, ids)):
        for method, headers in (("OPTIONS", {}), ("OPTIONS", preflight), ("HEAD", {}), ("GET", {})):
            response = client.open(path, method=method, headers=headers)
            seen = f"{method} {path} {headers}: {response.status_code}"
            assert text not in response.get_data(as_text=True), seen
            if method == "OPTIONS":
                assert (response.status_code, response.data) == (204, b""), seen
                assert "X-Cache" not in response.headers and "Allow" in response.headers, seen
            elif _needs_key(app, path, method):
                assert response.status_code == 401, seen
                assert response.headers.get("X-Cache") != "HIT", seen
                refused.add(f"{method} {path}")
    assert {f"GET /api/v1/ai/generate{QUERY}", f"HEAD /api/v1/ai/generate{QUERY}"} <= refused


def test_head_without_a_key_is_401_where_get_is(filled):
    app, _text, _ids = filled
    client = app.test_client()
    for method in ("GET", "HEAD"):
        response = client.open(f"/api/v1/ai/generate{QUERY}", method=method)
        assert response.status_code == 401, method
        assert "X-Cache" not in response.headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    token = issue_key(app.config["DATABASE_URL"])
    assert client.head(f"/api/v1/ai/generate{QUERY}", headers=bearer(token)).headers["X-Cache"] == "HIT"
