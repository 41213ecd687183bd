"""Template expansion is bounded: its length is known before the text is built, and each variable's value
and count are bounded, on `render` and on generation from a template."""

import json
import time
import tracemalloc

import pytest

from appfactory.web.errors import ApiError
from blueprints.templates.rendering import render, rendered_length
from tests.conftest import as_admin

GENERATE = "/api/v1/ai/generate"
EXPANDER = "{{a}}" * 4_000  # 20,000 characters: the longest body a template may have


def _template(client, body=EXPANDER) -> int:
    response = client.post("/api/v1/templates", json={"name": "expander", "body": body})
    assert response.status_code == 201
    return response.get_json()["id"]


def _expand(client, endpoint: str, template_id: int, variables: str):
    """POST `variables`, JSON text sent as written (a huge integer reaches the server as it is)."""
    if endpoint == "render":
        url, body = f"/api/v1/templates/{template_id}/render", f'{{"variables": {variables}}}'
    else:
        url, body = GENERATE, f'{{"template_id": {template_id}, "variables": {variables}}}'
    return client.post(url, data=body, content_type="application/json")


ENDPOINTS = ["render", "generate"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_expander_is_refused_at_once(client, endpoint):
    template_id = _template(client)
    started = time.perf_counter()
    response = _expand(client, endpoint, template_id, json.dumps({"a": "x" * 25_000}))
    elapsed = time.perf_counter() - started
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "variables.a"  # the value's own bound
    assert len(response.data) < 2_000 and elapsed < 1.0


@pytest.mark.parametrize("endpoint, field", [("render", "variables"), ("generate", "prompt")])
def test_a_text_past_the_cap_is_refused_before_it_is_built(client, endpoint, field):
    template_id = _template(client)
    value = json.dumps({"a": "x" * 5_000})  # within the value's bound: 20,000,000 characters rendered
    tracemalloc.start()
    try:
        response = _expand(client, endpoint, template_id, value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == field and "20000000" in error["message"]
    assert peak < 5_000_000  # the 20 MB text was never made


def test_the_render_cap_is_render_max_chars(new_app):
    client = as_admin(new_app(RENDER_MAX_CHARS=30))
    template_id = _template(client, body="<{{a}}{{ a }}>")
    url = f"/api/v1/templates/{template_id}/render"
    assert client.post(url, json={"variables": {"a": "x" * 14}}).get_json()["text"] == "<" + "x" * 28 + ">"
    refused = client.post(url, json={"variables": {"a": "x" * 15}})  # 32 characters
    assert refused.status_code == 422
    assert refused.get_json()["error"]["message"] == (
        "variables: the filled template would be 32 characters, more than the 30 allowed"
    )


@pytest.mark.parametrize(
    "body, variables",
    [
        ("plain", {}),
        ("{{a}}-{{ b }}-{{a}}", {"a": "xyz", "b": 12}),
        ("{{a}}{{b}}{{c}}", {"a": 1.5, "b": -(2**63), "c": "é☃"}),
        ("{{ a }}", {"a": 1e16}),
    ],
)
def test_the_length_counted_is_the_length_built(body, variables):
    length = rendered_length(body, variables)
    assert len(render(body, variables, max_chars=length)) == length
    with pytest.raises(ApiError):
        render(body, variables, max_chars=length - 1)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "number", ["1" + "0" * 308, "1" + "0" * 400, str(2**63), str(-(2**63) - 1), "1e300", "NaN", "-Infinity"]
)
def test_a_number_outside_64_bits_is_422(client, endpoint, number):
    template_id = _template(client, body="n={{a}}")
    response = _expand(client, endpoint, template_id, f'{{"a": {number}}}')
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "variables.a"


@pytest.mark.parametrize("number", [str(2**63 - 1), str(-(2**63)), "-1.5e18"])
def test_numbers_within_64_bits_are_written_as_they_are(client, number):
    template_id = _template(client, body="n={{a}}")
    response = _expand(client, "render", template_id, f'{{"a": {number}}}')
    assert response.status_code == 200
    assert response.get_json()["text"] == f"n={json.loads(number)}"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_too_many_variables_is_422(client, endpoint):
    template_id = _template(client, body="{{v0}}")
    response = _expand(client, endpoint, template_id, json.dumps({f"v{n}": n for n in range(1_001)}))
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "variables"
