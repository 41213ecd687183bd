"""The AI endpoint: validation, providers, cache keys, and what is never cached."""

import pytest

from tests.support.upstream import FakeModel

GENERATE = "/api/v1/ai/generate"


@pytest.fixture
def make_client(new_app):
    """A test client for an app with the given overrides."""
    return lambda **overrides: new_app(**overrides).test_client()


@pytest.fixture
def ai(make_client):
    return make_client(AI_MODELS="local-echo,other")


def test_miss_then_hit_with_the_same_body(ai):
    first = ai.get(f"{GENERATE}?prompt=Hello")
    second = ai.get(f"{GENERATE}?prompt=Hello")
    assert first.status_code == second.status_code == 200
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    body = first.get_json()
    assert list(body) == ["prompt", "model", "provider", "text", "cached", "generated_at", "usage"]
    assert body["cached"] is False and second.get_json()["cached"] is True
    # The local model reports no usage: an estimate, a token about four characters; a HIT spends none.
    estimate = {"prompt_tokens": 2, "completion_tokens": len(body["text"]) // 4 + 1, "estimated": True}
    assert body["usage"] == {
        **estimate,
        "total_tokens": 2 + estimate["completion_tokens"],
        "upstream_tokens": body["usage"]["total_tokens"],
    }
    assert {**body, "cached": True, "usage": {**body["usage"], "upstream_tokens": 0}} == second.get_json()
    assert body["provider"] == "local" and body["prompt"] == "Hello"


def test_same_parameters_in_another_order_or_encoding_share_an_entry(ai):
    assert ai.get(f"{GENERATE}?prompt=tea%20time&max_tokens=20&temperature=0.5").headers["X-Cache"] == "MISS"
    for variant in (
        f"{GENERATE}?temperature=0.5&max_tokens=20&prompt=tea+time",
        f"{GENERATE}?max_tokens=20&prompt=%74ea%20time&temperature=0.50",
    ):
        assert ai.get(variant).headers["X-Cache"] == "HIT"
    post = ai.post(GENERATE, json={"temperature": 0.5, "prompt": "tea time", "max_tokens": 20})
    assert post.headers["X-Cache"] == "HIT"
    ai.get(f"{GENERATE}?prompt=defaults")
    explicit = ai.post(GENERATE, json={"prompt": "defaults", "max_tokens": 256, "temperature": 0.7})
    assert explicit.headers["X-Cache"] == "HIT"


def test_different_prompts_or_parameters_never_share(ai):
    variants = [
        "prompt=a",
        "prompt=b",
        "prompt=A",
        "prompt=a&model=other",
        "prompt=a&max_tokens=5",
        "prompt=a&temperature=0",
        "prompt=a&temperature=1.5",
    ]
    texts = set()
    for query in variants:
        response = ai.get(f"{GENERATE}?{query}")
        assert response.headers["X-Cache"] == "MISS", query
        texts.add(response.get_json()["text"])
    assert len(texts) == len(variants)


def test_local_provider_is_deterministic_and_takes_its_latency(make_client):
    slow = make_client(AI_LOCAL_LATENCY_MS=120)
    first = slow.get(f"{GENERATE}?prompt=same")
    assert float(first.headers["X-Process-Time"].removesuffix("ms")) >= 120
    assert "upstream;dur=" in first.headers["Server-Timing"]
    other = make_client()
    assert other.get(f"{GENERATE}?prompt=same").get_json()["text"] == first.get_json()["text"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("", "prompt"),
        ("prompt=", "prompt"),
        ("prompt=" + "x" * 41, "prompt"),
        ("prompt=a&max_tokens=0", "max_tokens"),
        ("prompt=a&max_tokens=5000", "max_tokens"),
        ("prompt=a&max_tokens=ten", "max_tokens"),
        ("prompt=a&temperature=-0.1", "temperature"),
        ("prompt=a&temperature=2.01", "temperature"),
        ("prompt=a&temperature=nan", "temperature"),
        ("prompt=a&model=" + "m" * 101, "model"),
    ],
)
def test_bad_query_is_422_naming_the_field(make_client, query, field):
    response = make_client(MAX_PROMPT_CHARS=40).get(f"{GENERATE}?{query}")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field
    assert "X-Cache" not in response.headers


@pytest.mark.parametrize(
    "body, field",
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": "a", "max_tokens": 1.5}, "max_tokens"),
        ({"prompt": "a", "max_tokens": True}, "max_tokens"),
        ({"prompt": "a", "temperature": "hot"}, "temperature"),
        ({"prompt": "a", "stream": "yes"}, "stream"),
        ({"prompt": "a", "template_id": 1}, "prompt"),
        ({"prompt": "a", "variables": {}}, "variables"),
        ({"template_id": "1"}, "template_id"),
        ({"template_id": 0}, "template_id"),
        ({"template_id": 1, "variables": []}, "variables"),
    ],
)
def test_bad_body_is_422_naming_the_field(ai, body, field):
    response = ai.post(GENERATE, json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_body_must_be_json(ai):
    assert ai.post(GENERATE, data="prompt=a").status_code == 415


def test_template_is_rendered_into_the_prompt(client):
    template = client.post("/api/v1/templates", json={"name": "t", "body": "Describe {{ thing }}."})
    template_id = template.get_json()["id"]
    response = client.post(GENERATE, json={"template_id": template_id, "variables": {"thing": "tea"}})
    assert response.status_code == 200
    assert response.get_json()["prompt"] == "Describe tea."
    assert client.get(f"{GENERATE}?prompt=Describe%20tea.").headers["X-Cache"] == "HIT"
    missing = client.post(GENERATE, json={"template_id": template_id})
    assert missing.status_code == 422 and missing.get_json()["error"]["missing"] == ["thing"]
    assert client.post(GENERATE, json={"template_id": 999, "variables": {}}).status_code == 404


def test_openai_provider_sends_a_chat_completion(make_client):
    with FakeModel() as model:
        client = make_client(
            AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_API_KEY="sk-test", AI_MODEL="tiny"
        )
        response = client.post(GENERATE, json={"prompt": "hi", "max_tokens": 9, "temperature": 0.2})
        again = client.get(f"{GENERATE}?prompt=hi&max_tokens=9&temperature=0.2")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["text"], body["model"], body["provider"]) == ("echo: hi", "tiny", "openai")
    assert model.bodies == [
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 9,
            "temperature": 0.2,
        }
    ]
    assert again.headers["X-Cache"] == "HIT" and model.calls == 1


@pytest.mark.parametrize(
    "status, answered, code, calls",
    [
        (500, 502, "upstream_error", 1),  # not transient: no retry
        (200, 502, "upstream_error", 1),  # a wrong path: 404, an unknown model
        (429, 503, "upstream_busy", 2),  # throttled: retried, then "come back later"
        (503, 503, "upstream_unavailable", 2),
    ],
)
def test_upstream_errors_are_told_apart_and_never_cached(make_client, status, answered, code, calls):
    with FakeModel(status=status) as model:
        url = model.url if status != 200 else model.url.replace("/v1", "/wrong")
        client = make_client(AI_PROVIDER="openai", AI_BASE_URL=url, AI_RETRIES=1)
        responses = [client.get(f"{GENERATE}?prompt=fail") for _ in range(2)]
    for response in responses:
        assert response.status_code == answered
        assert response.get_json()["error"]["code"] == code
        assert ("Retry-After" in response.headers) == (answered == 503)
    assert model.calls == 2 * calls


def test_upstream_timeout_is_504_and_never_cached(make_client):
    with FakeModel(delay=1.0) as model:
        client = make_client(AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_TIMEOUT_S=0.2)
        responses = [client.get(f"{GENERATE}?prompt=slow") for _ in range(2)]
    assert [r.status_code for r in responses] == [504, 504]
    assert responses[0].get_json()["error"]["code"] == "upstream_timeout"
    assert model.calls == 2


def test_unreachable_upstream_is_502(make_client):
    from tests.support.services import free_port

    client = make_client(AI_PROVIDER="openai", AI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    response = client.get(f"{GENERATE}?prompt=x")
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "upstream_error"
