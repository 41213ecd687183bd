"""Token budgets under real gunicorns on one Redis, against a model server that reports its usage."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from openai import OpenAI

from tests.support.gunicorn import Gunicorn
from tests.support.keys import bearer, issue_key
from tests.support.upstream import FakeModel, model_env

pytestmark = pytest.mark.slow

GENERATE = "/api/v1/ai/generate"
MODEL = "m1"


def _env(postgres, namespace: str, model: FakeModel, **extra) -> dict[str, str]:
    return model_env(postgres.url, namespace, model, AI_RETRIES=0, RATE_LIMIT_PER_MINUTE=10000, **extra)


def _reservation(prompt: str, max_tokens: int) -> int:
    """What the service holds for a call: the prompt at four characters a token, plus max_tokens."""
    return math.ceil(len(prompt) / 4) + max_tokens


def _within_one_minute_window(seconds_needed: float) -> None:
    """Budgets count per clock minute: start where the rest of this minute holds the whole test."""
    into = time.time() % 60
    if 60 - into < seconds_needed:
        time.sleep(60 - into + 0.2)


def _generate(url: str, key: str, prompt: str, max_tokens: int) -> requests.Response:
    body = {"prompt": prompt, "max_tokens": max_tokens}
    return requests.post(url + GENERATE, json=body, headers=bearer(key), timeout=30)


def _tokens_left(response: requests.Response) -> int | None:
    """`r` of the token policy in the RateLimit header, when the response lists it."""
    for item in response.headers.get("RateLimit", "").split(","):
        name, _, params = item.strip().partition(";")
        if name == '"tokens"':
            return int(dict(p.split("=") for p in params.split(";"))["r"])
    return None


def test_a_burst_over_two_instances_never_spends_more_than_the_budget(postgres, namespace):
    budget, max_tokens = 300, 20
    with FakeModel(delay=0.3, counts_tokens=True) as model:
        env = _env(postgres, namespace, model, AI_TOKENS_PER_MINUTE=budget)
        with Gunicorn(env, workers=2) as one, Gunicorn(env, workers=2) as other:
            key = issue_key(postgres.url, admin=False)
            _within_one_minute_window(40)
            barrier = threading.Barrier(40)

            def ask(n: int) -> requests.Response:
                barrier.wait()
                return _generate((one, other)[n % 2].url, key, f"burst question number {n}", max_tokens)

            with ThreadPoolExecutor(40) as pool:
                burst = list(pool.map(ask, range(40)))
            answered = [r for r in burst if r.status_code == 200]
            refused = [r for r in burst if r.status_code == 429]
            assert len(answered) + len(refused) == 40, [r.status_code for r in burst]
            burst_spent = sum(r.json()["usage"]["total_tokens"] for r in answered)
            one_call = _reservation("burst question number 10", max_tokens)
            # Every call held its worst case while in flight: no more than the budget's worth at once.
            assert 0 < len(answered) <= budget // one_call
            assert refused and refused[0].json()["error"]["code"] == "token_budget_exceeded"
            assert int(refused[0].headers["Retry-After"]) >= 1
            assert burst_spent <= budget

            # What follows spends the rest, settled at real usage, to within one call's reservation.
            follow_spent, n = 0, 0
            while True:
                answer = _generate((one, other)[n % 2].url, key, f"then question number {n}", max_tokens)
                n += 1
                if answer.status_code == 429:
                    break
                assert answer.status_code == 200, answer.text
                follow_spent += answer.json()["usage"]["total_tokens"]
                assert _tokens_left(answer) == budget - burst_spent - follow_spent
            key_id = key.split("_")[1]
            shown = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", "keys", "usage", key_id],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
    spent = burst_spent + follow_spent
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"key {key_id}: minute={spent}/{budget} day=")
    print(f"\nburst: {len(answered)} answered, {burst_spent} tokens; after it: {n - 1} more, {spent} in all")
    assert spent == model.charged  # the answers' usage is the model server's own count
    assert budget - _reservation("then question number 10", max_tokens) < spent <= budget


def test_failed_timed_out_and_abandoned_calls_give_their_reservation_back(postgres, namespace):
    # Each call holds more than half the budget: one more is admitted only if the last gave it back.
    budget, max_tokens = 120, 60

    def status(prompt: str, _before: int) -> int:
        return 500 if prompt.startswith("fail") else 200

    with FakeModel(status=status, counts_tokens=True) as model:
        env = _env(postgres, namespace, model, AI_TOKENS_PER_MINUTE=budget, AI_TIMEOUT_S=1)
        with Gunicorn(env, workers=1) as server:
            key = issue_key(postgres.url, admin=False)
            _within_one_minute_window(25)
            assert _generate(server.url, key, "fail now", max_tokens).status_code == 502
            assert _generate(server.url, key, "fine after a failure", max_tokens).status_code == 200

            model.delay = 2.0  # past AI_TIMEOUT_S
            assert _generate(server.url, key, "too slow", max_tokens).status_code == 504
            model.delay = 0.0
            spent = budget - _tokens_left(_generate(server.url, key, "fine after a timeout", max_tokens))

            model.delay = 3.0  # a stream of a few words over three seconds; its client leaves early
            with OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as client:
                ask = [{"role": "user", "content": "a long answer in many words to be left early"}]
                with client.chat.completions.create(
                    model=MODEL, messages=ask, max_tokens=max_tokens, stream=True
                ) as stream:
                    next(iter(stream))
            deadline = time.monotonic() + 5
            while model.disconnects == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert model.disconnects == 1
            model.delay = 0.0
            time.sleep(0.2)  # the worker settles once it sees its client gone
            after = _generate(server.url, key, "fine after a client left", max_tokens)
            assert after.status_code == 200, after.text
    # The abandoned stream was charged what it sent (a few words), not its reservation.
    charged_for_abandoned = budget - _tokens_left(after) - spent - after.json()["usage"]["total_tokens"]
    assert 0 < charged_for_abandoned < _reservation(ask[0]["content"], max_tokens) // 2


def test_usage_of_native_and_v1_answers_agree_and_a_hit_costs_nothing_upstream(postgres, namespace):
    with FakeModel(counts_tokens=True) as model:
        env = _env(postgres, namespace, model, AI_TOKENS_PER_MINUTE=10_000)
        with Gunicorn(env, workers=1) as server:
            key = issue_key(postgres.url, admin=False)
            prompt = "how many tokens do these seven words make"
            native = _generate(server.url, key, prompt, 64)
            assert native.status_code == 200
            usage = native.json()["usage"]
            assert usage == {
                "prompt_tokens": 8,
                "completion_tokens": 9,
                "total_tokens": 17,
                "estimated": False,
                "upstream_tokens": 17,
            }
            assert 'tokens";q=10000;w=60' in native.headers["RateLimit-Policy"]
            hit = _generate(server.url, key, prompt, 64)
            assert hit.headers["X-Cache"] == "HIT"
            assert hit.json()["usage"] == {**usage, "upstream_tokens": 0}

            with OpenAI(base_url=f"{server.url}/v1", api_key=key) as client:
                ask = [{"role": "user", "content": prompt}]
                whole = client.chat.completions.create(
                    model=MODEL, messages=ask, max_tokens=64, temperature=0
                )
                assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (8, 9)
                streamed = list(
                    client.chat.completions.create(
                        model=MODEL,
                        messages=ask,
                        max_tokens=65,  # another entry: a second model call, streamed
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
            assert streamed[-1].choices == [] and streamed[-1].usage.total_tokens == 17
            assert streamed[-1].usage.model_extra["upstream_tokens"] == 17
    assert model.charged == 17 * 3  # native, /v1 whole, /v1 streamed: the hit cost nothing
