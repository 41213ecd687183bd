"""The service's Flask class: WSGI headers and JSON bodies as Flask and werkzeug make them, made cheaper."""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from decimal import Decimal

import pytest
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.sql.elements import quoted_name
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from appfactory.web.application import ServiceResponse

ENVIRON = EnvironBuilder(path="/api/v1/x", base_url="http://example.test/").get_environ()


def _responses() -> list[tuple[str, dict]]:
    return [
        ("json with headers", {"response": '{"a":1}', "headers": {"X-Cache": "HIT", "X-Request-ID": "r1"}}),
        (
            "created with a relative location",
            {"response": "{}", "status": 201, "headers": {"Location": "/t/1"}},
        ),
        ("lower-case location", {"response": "{}", "status": 302, "headers": {"location": "/päth"}}),
        ("content-location", {"response": "x", "headers": {"Content-Location": "/ü"}}),
        ("no content", {"response": "", "status": 204}),
        ("not modified", {"response": "x", "status": 304, "headers": {"ETag": '"1"'}}),
        ("informational", {"response": "", "status": 103}),
        ("streamed, no length", {"response": iter([b"a", b"b"])}),
        ("error", {"response": '{"error":{}}', "status": 503, "headers": {"Retry-After": "2"}}),
    ]


@pytest.mark.parametrize(("case", "kwargs"), _responses(), ids=[case for case, _ in _responses()])
def test_wsgi_headers_are_werkzeugs(case, kwargs):
    ours = ServiceResponse(**kwargs)
    theirs = Response(**{**kwargs, "response": ours.response})
    expected = Response.get_wsgi_headers(theirs, ENVIRON).to_wsgi_list()
    got = ours.get_wsgi_headers(ENVIRON)
    assert got.to_wsgi_list() == expected, case
    got.add("X-Added", "1")  # a copy: the response's own headers do not change
    assert "X-Added" not in ours.headers


def test_plain_headers_are_copied_without_validating_them_again(monkeypatch):
    response = ServiceResponse('{"a":1}', headers={"X-Cache": "HIT"})
    added = []
    original_add = Headers.add
    monkeypatch.setattr(
        Headers, "add", lambda self, *a, **kw: added.append(a) or original_add(self, *a, **kw)
    )
    headers = response.get_wsgi_headers(ENVIRON)
    assert added == []
    assert headers.to_wsgi_list() == response.headers.to_wsgi_list()


def test_the_service_answers_with_it(app):
    assert app.response_class is ServiceResponse
    assert app.test_client().get("/health/live").headers["Content-Length"] == "19"


def test_options_is_answered_without_a_body(app):
    response = app.test_client().options("/api/v1/templates")
    assert (response.status_code, response.data) == (204, b"")
    assert "Content-Type" not in response.headers
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


@dataclasses.dataclass
class _Point:
    x: int


_SAME_AS_FLASK = {
    "nested": {"a": [1, 2.5, None, True], "b": {"c": "text"}},
    "keys in written order": {"z": 1, "a": 2},
    "an HTTP date": {"at": datetime.datetime(2026, 11, 26, 3, 0, tzinfo=datetime.UTC)},
    "a date": {"on": datetime.date(2026, 11, 26)},
    "uuid and decimal": {"id": uuid.UUID(int=7), "amount": Decimal("1.10")},
    "a dataclass": {"point": _Point(3)},
    "integer keys": {1: "one", 2.5: "two and a half", False: "no", None: "none"},
    "column names (a str subclass)": {quoted_name("id", None): 1},
    "an integer beyond 64 bits (Flask's way)": {"big": 2**70},
    "a lone surrogate (Flask's way)": {"text": "\ud800"},
}


@pytest.mark.parametrize("value", _SAME_AS_FLASK.values(), ids=list(_SAME_AS_FLASK))
def test_json_bodies_say_what_flasks_say(app, value):
    with app.app_context():
        ours = app.json.response(value)
    plain = Flask(__name__)
    plain.json.sort_keys = False
    with plain.app_context():
        flasks = plain.json.response(value)
    assert ours.mimetype == flasks.mimetype == "application/json"
    assert ours.get_data().endswith(b"\n")
    assert json.loads(ours.get_data()) == json.loads(flasks.get_data())
    assert list(json.loads(ours.get_data())) == list(json.loads(flasks.get_data()))  # same key order


def test_json_bodies_are_utf8_and_never_write_nan(app):
    with app.app_context():
        body = app.json.response({"name": "Zoë 日本", "ratio": float("nan")}).get_data()
    assert "Zoë 日本".encode() in body
    assert json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} is not JSON")) == {
        "name": "Zoë 日本",
        "ratio": None,
    }


def test_what_json_cannot_write_still_fails_as_in_flask(app):
    with app.app_context(), pytest.raises(TypeError):
        app.json.response({"thing": object()})


def test_debug_output_stays_indented(app):
    app.debug = True
    with app.app_context():
        assert b'\n  "a": 1' in app.json.response({"a": 1}).get_data()


def test_the_service_writes_its_rows_without_falling_back(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("written by the json module")

    monkeypatch.setattr(DefaultJSONProvider, "response", refuse)
    created = client.post("/api/v1/templates", json={"name": "rows", "body": "Hi {{ who }}"})
    assert created.status_code == 201, created.get_json()
    user = client.post("/api/v1/users", json={"email": "rows@example.com", "name": "Zoë"})
    assert user.status_code == 201, user.get_json()
    for path in (created.headers["Location"], f"/api/v1/users/{user.get_json()['id']}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.get_data().endswith(b"}\n")
    assert "Zoë".encode() in client.get(f"/api/v1/users/{user.get_json()['id']}").get_data()


def test_error_bodies_are_written_as_every_other_body(client):
    client.post("/api/v1/templates", json={"name": "Zoë", "body": "x"})
    conflict = client.post("/api/v1/templates", json={"name": "Zoë", "body": "x"})
    missing = client.get("/api/v1/templates/999999")
    for response in (conflict, missing):
        body = response.get_data()
        assert response.mimetype == "application/json"
        assert body.endswith(b"}\n") and b'": ' not in body and b'", "' not in body  # compact
        assert (
            body == (json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        )
    assert conflict.status_code == 409 and "Zoë".encode() in conflict.get_data()  # UTF-8, not \u escapes
    assert missing.get_json()["error"]["code"] == "not_found"
