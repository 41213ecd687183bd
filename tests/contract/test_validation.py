"""Requests are held to their schemas: JSON types as declared, unknown fields and query parameters
refused, every fault a 422 naming the field, on the early answer of a cached entry too."""

from __future__ import annotations

import pytest
from flask import Flask

from appfactory import create_app
from appfactory.contract import answers, contract
from blueprints.templates.schemas import Template
from tests.conftest import base_overrides


def _fault(response, field: str) -> str:
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert error["field"] == field
    assert error["message"].startswith(f"{field}: ")
    return error["message"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"prompt": "hi", "max_tokens": "64"}, "max_tokens"),  # a string is not a number
        ({"prompt": "hi", "max_tokens": 64.5}, "max_tokens"),  # nor is a fraction an integer
        ({"prompt": "hi", "max_tokens": True}, "max_tokens"),  # nor a boolean
        ({"prompt": "hi", "temperature": "0.5"}, "temperature"),
        ({"prompt": "hi", "temperature": False}, "temperature"),
        ({"prompt": "hi", "max_token": 5}, "max_token"),  # misspelled: unknown
        ({"prompt": 5}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "a\x00b"}, "prompt"),
        ({"prompt": "hi", "model": ["x"]}, "model"),
        ({"template_id": "1"}, "template_id"),
        ({"template_id": 1, "variables": {"x": [1]}}, "variables.x"),
        ({"template_id": 1, "variables": {"x": True}}, "variables.x"),
    ],
)
def test_wrong_json_types_and_unknown_fields_are_422_naming_them(client, body, field):
    _fault(client.post("/api/v1/ai/generate", json=body), field)


def test_whole_numbers_and_integers_for_numbers_are_accepted(client):
    response = client.post("/api/v1/ai/generate", json={"prompt": "hi", "max_tokens": 64, "temperature": 1})
    assert response.status_code == 200, response.get_json()
    # JSON has one number type: 64.0 is the integer 64 (as JSON Schema's `integer` says).
    same = client.post("/api/v1/ai/generate", json={"prompt": "hi", "max_tokens": 64.0, "temperature": 1})
    assert same.status_code == 200 and same.headers["X-Cache"] == "HIT", same.get_json()


@pytest.mark.parametrize(
    "query, field",
    [
        ("prompt=hi&max_token=5", "max_token"),
        ("prompt=hi&temprature=0.5", "temprature"),
        ("prompt=hi&max_tokens=many", "max_tokens"),
        ("prompt=hi&max_tokens=5&max_tokens=6", "max_tokens"),
        ("prompt=hi&temperature=nan", "temperature"),
        ("prompt=hi&temperature=3", "temperature"),
        ("max_tokens=5", "prompt"),
    ],
)
def test_unknown_and_wrong_query_parameters_are_422_naming_them(client, query, field):
    _fault(client.get(f"/api/v1/ai/generate?{query}"), field)


def test_an_unknown_query_parameter_is_refused_even_where_a_cached_answer_waits(shared_client):
    assert shared_client.get("/api/v1/ai/generate?prompt=warm").status_code == 200
    hit = shared_client.get("/api/v1/ai/generate?prompt=warm")
    assert hit.headers["X-Cache"] == "HIT"
    message = _fault(shared_client.get("/api/v1/ai/generate?prompt=warm&max_token=3"), "max_token")
    assert message == "max_token: unknown query parameter"


@pytest.mark.parametrize(
    "method, path, body, field",
    [
        ("post", "/api/v1/templates", {"name": "n", "body": "b", "owner_id": 2}, "owner_id"),
        ("post", "/api/v1/templates", {"name": 7, "body": "b"}, "name"),
        ("post", "/api/v1/templates", {"name": "   ", "body": "b"}, "name"),
        ("post", "/api/v1/users", {"email": "a@b.co", "name": "A", "admin": True}, "admin"),
        ("post", "/api/v1/users", {"email": "not-an-email", "name": "A"}, "email"),
        ("patch", "/api/v1/users/1", {"name": None}, "name"),
    ],
)
def test_bodies_of_every_route_are_held_to_their_schema(client, method, path, body, field):
    _fault(getattr(client, method)(path, json=body), field)


def test_null_is_not_a_value_a_partial_update_takes(client):
    created = client.post("/api/v1/templates", json={"name": "t", "body": "x"}).get_json()
    _fault(client.patch(f"/api/v1/templates/{created['id']}", json={"name": None}), "name")
    _fault(client.get(f"/api/v1/templates/{created['id']}?verbose=1"), "verbose")
    _fault(client.get("/api/v1/templates?limit=0"), "limit")
    assert client.get(f"/api/v1/templates/{created['id']}").get_json()["name"] == "t"


def test_an_id_past_the_range_is_404_for_every_method(client):
    for method in ("get", "put", "patch", "delete"):
        response = getattr(client, method)("/api/v1/templates/2147483648", json={})
        assert response.status_code == 404, method


def test_an_answer_that_breaks_its_own_schema_is_a_logged_500(capsys):
    app: Flask = create_app(base_overrides(DATABASE_URL="sqlite://"))

    @app.get("/broken")
    @contract.validate(resp=answers(200, Template))
    def broken() -> dict:
        return {"id": "not a number"}

    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "AnswerBreaksContract" in capsys.readouterr().out
