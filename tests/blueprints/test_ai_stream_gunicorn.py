"""The native endpoint's streamed answers under real gunicorns on one Redis: events as the model writes
them, stored once ended, replayed piece by piece through another instance."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from bench import probes
from tests.support.gunicorn import Gunicorn
from tests.support.keys import bearer, issue_key
from tests.support.upstream import FakeModel, model_env

pytestmark = pytest.mark.slow

GENERATE = "/api/v1/ai/generate"


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
        env = model_env(postgres.url, namespace, model)
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


def _stream(url: str, prompt: str, timeout: float = 30) -> tuple[str, float, float, str]:
    """(the text of the pieces, seconds to the first piece, seconds to the end, X-Cache)."""
    started = time.perf_counter()
    body = {"prompt": prompt, "stream": True}
    with requests.post(f"{url}{GENERATE}", json=body, stream=True, timeout=timeout) as response:
        events, first = _events(response)
        cache = response.headers["X-Cache"]
    assert [name for name, _ in events][-1] == "done", events[-1]
    text = "".join(data["text"] for name, data in events if name == "message")
    assert text == events[-1][1]["text"]
    return text, first, time.perf_counter() - started, cache


def test_identical_streams_follow_the_leaders_pieces_as_they_come(postgres, namespace):
    with FakeModel(delay=2.0) as model:
        env = model_env(postgres.url, namespace, model)
        with Gunicorn(env, workers=1) as one, Gunicorn(env, workers=1) as other:
            barrier = threading.Barrier(12)

            def ask(n: int) -> tuple[str, float, float, str]:
                barrier.wait()
                return _stream((one, other)[n % 2].url, "the same question for twelve clients at once")

            with ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(ask, range(12)))
    assert {text for text, _, _, _ in answers} == {"echo: the same question for twelve clients at once"}
    assert model.calls == 1
    assert sorted(cache for _, _, _, cache in answers) == ["HIT"] * 11 + ["MISS"]
    # Every follower got its first piece while the model was still writing, not after its end.
    assert all(first < whole / 2 for _, first, whole, _ in answers), answers


def test_a_leader_whose_client_leaves_streams_on_for_its_followers(postgres, namespace):
    with FakeModel(delay=2.0) as model:
        with Gunicorn(model_env(postgres.url, namespace, model), workers=2) as server:
            prompt = "a question whose first asker leaves early"
            body = {"prompt": prompt, "stream": True}
            leaving = requests.post(f"{server.url}{GENERATE}", json=body, stream=True, timeout=30)
            next(leaving.iter_lines())  # the first piece: it leads the model call
            with ThreadPoolExecutor(1) as pool:
                following = pool.submit(_stream, server.url, prompt)
                time.sleep(0.3)  # the follower listens
                leaving.close()
                text, _, _, cache = following.result()
            assert (text, cache) == (f"echo: {prompt}", "HIT")
            stored = requests.post(f"{server.url}{GENERATE}", json={"prompt": prompt}, timeout=30)
            assert stored.headers["X-Cache"] == "HIT" and stored.json()["text"] == text
    assert (model.calls, model.disconnects) == (1, 0)  # the model call was never cut


def test_when_the_leading_instance_dies_a_follower_takes_over(postgres, namespace):
    with FakeModel(delay=3.0) as model:
        env = model_env(postgres.url, namespace, model)
        leader = Gunicorn(env, workers=1).start()
        other = Gunicorn(env, workers=1).start()
        try:
            prompt = "a question whose leader dies halfway through its stream"
            body = {"prompt": prompt, "stream": True}
            doomed = requests.post(f"{leader.url}{GENERATE}", json=body, stream=True, timeout=30)
            next(doomed.iter_lines())
            with ThreadPoolExecutor(1) as pool:
                following = pool.submit(_stream, other.url, prompt, 60)
                time.sleep(1.0)  # the follower has some of the pieces
                for pid in [*probes.workers(leader.process.pid), leader.process.pid]:
                    os.kill(pid, signal.SIGKILL)
                text, _, _, _ = following.result()
            doomed.close()
        finally:
            leader.close()
            other.close()
    assert text == f"echo: {prompt}"  # whole, nothing sent twice
    assert model.calls == 2  # the dead leader's call, then the follower's
