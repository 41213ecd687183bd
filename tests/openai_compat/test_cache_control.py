"""/v1/chat/completions, not streamed, honours a request's Cache-Control through cache_call and answers
with Cache-Status (docs/cache.md); the same fixtures as tests/cache/test_cache_control.py."""

from __future__ import annotations

import pytest

from tests.support.services import REDIS_URL, require_redis
from tests.support.upstream import FakeModel


@pytest.fixture
def model():
    with FakeModel() as fake:
        yield fake


@pytest.fixture
def client(new_app, model):
    require_redis().close()
    return new_app(REDIS_URL=REDIS_URL, AI_PROVIDER="openai", AI_BASE_URL=model.url).test_client()


def _status(response) -> tuple[str, str]:
    return response.headers["X-Cache"], response.headers["Cache-Status"]


def test_non_streamed_chat_completions_honour_cache_control(client, model):
    model_id = sorted(client.application.extensions["ai_models"])[0]
    body = {"model": model_id, "messages": [{"role": "user", "content": "hello"}]}
    path = "/v1/chat/completions"
    absent = client.post(path, json=body, headers={"Cache-Control": "only-if-cached"})
    assert absent.status_code == 504
    assert model.calls == 0
    assert _status(client.post(path, json=body)) == ("MISS", "aigen; fwd=uri-miss; stored")
    assert client.post(path, json=body).headers["X-Cache"] == "HIT"
    fresh = client.post(path, json=body, headers={"Cache-Control": "no-cache"})
    assert _status(fresh) == ("MISS", "aigen; fwd=request; stored")
    assert model.calls == 2
