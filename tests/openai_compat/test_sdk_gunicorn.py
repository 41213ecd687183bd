"""The OpenAI-compatible face under a real gunicorn, driven by the official `openai` package."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from openai import OpenAI

from tests.support.gunicorn import Gunicorn
from tests.support.keys import issue_key
from tests.support.services import REDIS_URL
from tests.support.upstream import FakeModel

# The SDK's clients hold pooled sockets the garbage collector may close late, in another test: what the
# service does is asserted below, not when this process lets go of its own sockets.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

MODEL = "m1"


@pytest.fixture
def sdk():
    """Makes the test's SDK clients and closes them at its end: no pooled socket outlives its test."""
    made: list[OpenAI] = []

    def make(url: str, key: str, **options) -> OpenAI:
        made.append(OpenAI(base_url=f"{url}/v1", api_key=key, **options))
        return made[-1]

    yield make
    for client in made:
        client.close()
    gc.collect()  # what the SDK let go of is closed now, under this module's warning filters


def _env(postgres, namespace: str, model: FakeModel, **extra) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": namespace,
        "AI_PROVIDER": "openai",
        "AI_BASE_URL": model.url,
        "AI_MODEL": MODEL,
        "AI_ALLOW_ANONYMOUS": "false",
        "LOG_LEVEL": "WARNING",
        **{key: str(value) for key, value in extra.items()},
    }


def _ask(text: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def _streamed(client: OpenAI, text: str, **options) -> tuple[list[str], float, list]:
    """(the content pieces, seconds to the first, every chunk) of a streamed completion."""
    started, first, pieces, chunks = time.perf_counter(), None, [], []
    for chunk in client.chat.completions.create(model=MODEL, messages=_ask(text), stream=True, **options):
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - started
            pieces.append(chunk.choices[0].delta.content)
    return pieces, first, chunks


def test_the_sdk_lists_models_completes_streams_and_reads_the_cache(postgres, namespace, sdk):
    with FakeModel(delay=2.0) as model:
        env = _env(postgres, namespace, model, RATE_LIMIT_PER_MINUTE=1000)
        with Gunicorn(env, workers=1) as one, Gunicorn(env, workers=1) as other:
            key = issue_key(postgres.url, admin=False)
            client = sdk(one.url, key)
            assert [m.id for m in client.models.list()] == [MODEL]
            assert client.models.retrieve(MODEL).id == MODEL

            answer = client.chat.completions.create(model=MODEL, messages=_ask("hello there world"))
            assert answer.object == "chat.completion" and answer.model == MODEL
            assert answer.choices[0].message.content == "echo: hello there world"
            assert answer.choices[0].finish_reason == "stop"
            assert (
                answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens > 0
            )

            pieces, first_s, chunks = _streamed(
                client, "stream me over two seconds please", stream_options={"include_usage": True}
            )
            assert "".join(pieces) == "echo: stream me over two seconds please"
            assert len(pieces) >= 3 and first_s < 1.0  # the first word well before the model's 2 s
            assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
            calls = model.calls

            # The repeats, through the other instance: cache hits, the stream replayed piece by piece.
            again = sdk(other.url, key)
            raw = again.chat.completions.with_raw_response.create(
                model=MODEL, messages=_ask("hello there world")
            )
            assert (
                raw.headers["X-Cache"] == "HIT"
                and raw.parse().choices[0].message.content == answer.choices[0].message.content
            )
            replayed, _, _ = _streamed(again, "stream me over two seconds please")
            assert replayed == pieces
            joined = again.chat.completions.create(
                model=MODEL, messages=_ask("stream me over two seconds please")
            )
            assert joined.choices[0].message.content == "".join(pieces)
            assert model.calls == calls


def test_the_sdk_raises_its_own_exceptions(postgres, namespace, sdk):
    with FakeModel() as model:
        env = _env(postgres, namespace, model, RATE_LIMIT_PER_MINUTE=3)
        with Gunicorn(env, workers=1) as server:
            key = issue_key(postgres.url, admin=False)
            with pytest.raises(openai.AuthenticationError) as refused:
                sdk(server.url, "aig_1_not-a-key", max_retries=0).models.list()
            assert refused.value.body["type"] == "authentication_error"

            client = sdk(server.url, key, max_retries=0)
            with pytest.raises(openai.BadRequestError) as bad:
                client.chat.completions.create(model=MODEL, messages=[])
            assert bad.value.body["param"] == "messages" and bad.value.body["type"] == "invalid_request_error"
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="not-offered", messages=_ask("x"))
            client.models.list()  # the key's third request of the minute
            with pytest.raises(openai.RateLimitError) as limited:
                client.chat.completions.create(model=MODEL, messages=_ask("one more"))
            assert int(limited.value.response.headers["Retry-After"]) >= 1
            assert (
                limited.value.body["type"] == "rate_limit_error"
                and limited.value.body["code"] == "rate_limited"
            )


def test_the_sdks_own_retries_honour_retry_after(postgres, namespace, sdk):
    """One model call at a time and no wait for a slot: a second caller gets 503 upstream_busy with
    Retry-After: 1, and the SDK's own retry, after that second, is answered."""
    with FakeModel(delay=1.0) as model:
        env = _env(
            postgres, namespace, model, RATE_LIMIT_PER_MINUTE=1000, AI_MAX_CONCURRENCY=1, AI_QUEUE_WAIT_MS=0
        )
        with Gunicorn(env, workers=1) as server:
            key = issue_key(postgres.url, admin=False)
            client = sdk(server.url, key, max_retries=2)
            first = threading.Thread(
                target=lambda: client.chat.completions.create(model=MODEL, messages=_ask("first"))
            )
            first.start()
            time.sleep(0.3)  # the first holds the one slot
            started = time.perf_counter()
            second = client.chat.completions.create(model=MODEL, messages=_ask("second"))
            took = time.perf_counter() - started
            first.join()
            log = server.log()
    assert second.choices[0].message.content == "echo: second"
    assert log.count("Refused a generation") == 1  # refused once, then answered on the retry
    assert took >= 1.0  # the retry waited the Retry-After second


def test_a_client_leaving_mid_stream_closes_the_model_servers_connection(postgres, namespace, sdk):
    with FakeModel(delay=3.0) as model:
        with Gunicorn(_env(postgres, namespace, model, RATE_LIMIT_PER_MINUTE=1000), workers=1) as server:
            key = issue_key(postgres.url, admin=False)
            with sdk(server.url, key) as client:
                with client.chat.completions.create(
                    model=MODEL, messages=_ask("a long answer with many words to stream slowly"), stream=True
                ) as stream:
                    next(iter(stream))
                # the client has left
                deadline = time.monotonic() + 5
                while model.disconnects == 0 and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert model.disconnects == 1
                # and nothing partial was cached: the same request streams from the model again
                calls = model.calls
                pieces, _, _ = _streamed(client, "a long answer with many words to stream slowly")
            assert model.calls == calls + 1 and "".join(pieces).endswith("slowly")


def test_twenty_identical_streams_across_two_instances_get_one_text(postgres, namespace, sdk):
    with FakeModel(delay=1.0) as model:
        env = _env(postgres, namespace, model, RATE_LIMIT_PER_MINUTE=1000)
        with Gunicorn(env, workers=1) as one, Gunicorn(env, workers=1) as other:
            key = issue_key(postgres.url, admin=False)
            clients = [sdk(server.url, key) for server in (one, other)]
            barrier = threading.Barrier(20)

            def ask(n: int) -> str:
                barrier.wait()
                return "".join(_streamed(clients[n % 2], "the same question")[0])

            with ThreadPoolExecutor(20) as pool:
                texts = list(pool.map(ask, range(20)))
    assert set(texts) == {"echo: the same question"}
    print(f"\n20 identical concurrent streams over two instances: {model.calls} model stream(s)")
