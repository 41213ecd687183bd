"""The native endpoint's streamed answers under real gunicorns on one Redis: events as the model writes
them, stored once ended, replayed piece by piece through another instance."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.keys import bearer, issue_key
from tests.support.services import REDIS_URL, delete_namespace, require_redis
from tests.support.upstream import FakeModel

pytestmark = pytest.mark.slow

GENERATE = "/api/v1/ai/generate"


@pytest.fixture
def namespace():
    require_redis().close()
    name = key_namespace()
    yield name
    with require_redis() as client:
        delete_namespace(client, name)


def _events(response: requests.Response) -> tuple[list[tuple[str, dict]], float]:
    """(event name, data) of each server-sent event, and the seconds to the first one."""
    started, first, events = time.perf_counter(), None, []
    name = "message"
    for line in response.iter_lines():
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            first = first or time.perf_counter() - started
            events.append((name, json.loads(line[6:])))
            name = "message"
    return events, first


def test_a_streamed_answer_starts_at_once_is_stored_and_replayed_piece_by_piece(postgres, namespace):
    with FakeModel(delay=2.0, counts_tokens=True) as model:
        env = {
            "DATABASE_URL": postgres.url,
            "REDIS_URL": REDIS_URL,
            "CACHE_NAMESPACE": namespace,
            "AI_PROVIDER": "openai",
            "AI_BASE_URL": model.url,
            "AI_MODEL": "m1",
            "LOG_LEVEL": "WARNING",
        }
        with Gunicorn(env, workers=1) as one, Gunicorn(env, workers=1) as other:
            key = bearer(issue_key(postgres.url, admin=False))
            body = {"prompt": "tell me something in seven words", "stream": True}
            started = time.perf_counter()
            asked = requests.post(f"{one.url}{GENERATE}", json=body, headers=key, stream=True, timeout=30)
            with asked as live:
                assert live.headers["Content-Type"].startswith("text/event-stream")
                assert live.headers["X-Cache"] == "MISS"
                events, first_s = _events(live)
            whole_s = time.perf_counter() - started
            pieces = [data["text"] for name, data in events if name == "message"]
            (done,) = [data for name, data in events if name == "done"]
            assert "".join(pieces) == done["text"] == "echo: tell me something in seven words"
            assert first_s < whole_s / 2  # the first words well before the model's last
            assert done["cached"] is False and done["usage"]["upstream_tokens"] == 13
            assert not done["usage"]["estimated"]

            # Through the other instance: Accept asks for events; the same pieces, from the cache.
            plain = {k: v for k, v in body.items() if k != "stream"}
            again = requests.post(
                f"{other.url}{GENERATE}",
                json=plain,
                headers={**key, "Accept": "text/event-stream"},
                stream=True,
                timeout=30,
            )
            replayed, _ = _events(again)
            assert again.headers["X-Cache"] == "HIT"
            assert [data["text"] for name, data in replayed if name == "message"] == pieces
            assert replayed[-1][1]["usage"]["upstream_tokens"] == 0
            joined = requests.post(f"{other.url}{GENERATE}", json=plain, headers=key, timeout=30).json()
            assert joined["text"] == done["text"] and joined["cached"] is True
    assert model.calls == 1
    print(f"\nnative stream: first event after {first_s * 1000:.0f} ms of {whole_s * 1000:.0f} ms")
