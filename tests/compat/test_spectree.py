"""compat.spectree: the lean plugin parses a request into the same context, and fails it with the same
errors, as SpecTree's own Flask plugin."""

from __future__ import annotations

import pytest
from flask import Flask, request
from pydantic import BaseModel, Field, ValidationError
from spectree.plugins.flask_plugin import FlaskPlugin

from appfactory.compat import spectree as compat_spectree
from appfactory.contract import contract
from appfactory.contract.schemas import Body, Query


class Page(Query):
    limit: int = 20
    tag: list[str] = []


class Note(Body):
    text: str
    stars: int = 0


class Client(BaseModel):
    client: str = Field(alias="X-Client")


class Session(BaseModel):
    session: str


class Form(BaseModel):
    text: str


_SCHEMAS = {"query": Page, "json": Note, "form": None, "headers": None, "cookies": None}

REQUESTS = {
    "query": {"path": "/x?limit=5&tag=a&tag=b", "method": "GET"},
    "query of the wrong type": {"path": "/x?limit=many", "method": "GET"},
    "unknown query, headers, cookie": {
        "path": "/x?limt=5",
        "method": "GET",
        "headers": {"Cookie": "session=1", "X-A": "b"},
    },
    "body": {"path": "/x", "method": "POST", "json": {"text": "hi", "stars": 3}},
    "body of the wrong type": {"path": "/x", "method": "POST", "json": {"text": "hi", "stars": "3"}},
    "unknown field": {"path": "/x", "method": "POST", "json": {"text": "hi", "colour": "red"}},
    "invalid JSON": {"path": "/x", "method": "POST", "data": "not json", "content_type": "application/json"},
    "not JSON": {"path": "/x", "method": "POST", "data": "text=hi", "content_type": "text/plain"},
    "a form": {"path": "/x", "method": "POST", "data": {"text": "hi"}},  # not read as JSON
    "a body on DELETE": {"path": "/x", "method": "DELETE", "json": {"text": "hi"}},
    "a JSON array": {"path": "/x", "method": "PATCH", "data": "[1, 2]", "content_type": "application/json"},
}


def _parsed(plugin_class, schemas: dict, **environ):
    """What `plugin_class` leaves in `request.context`, or the errors it raises."""
    app = Flask(__name__)
    plugin = plugin_class(contract)
    with app.test_request_context(**environ):
        try:
            plugin.request_validation(request, **schemas)
        except ValidationError as err:
            return "invalid", err.errors(include_url=False)
        return "valid", request.context


@pytest.mark.parametrize("environ", REQUESTS.values(), ids=REQUESTS.keys())
def test_the_lean_plugin_parses_as_spectrees_own(environ):
    public = _parsed(FlaskPlugin, _SCHEMAS, **environ)
    assert _parsed(compat_spectree.LeanFlaskPlugin, _SCHEMAS, **environ) == public


DECLARED = {  # a view declaring headers, cookies or a form: SpecTree's own parse, valid then not
    "headers": ({"headers": {"X-Client": "curl"}}, {"headers": {"X-Other": "curl"}}, Client),
    "cookies": ({"headers": {"Cookie": "session=s1"}}, {}, Session),
    "form": ({"method": "POST", "data": {"text": "hi"}}, {"method": "POST", "data": {"other": "x"}}, Form),
}


@pytest.mark.parametrize("kind", DECLARED)
def test_a_view_that_declares_headers_cookies_or_a_form_gets_them_checked_as_spectree_does(kind):
    good, bad, model = DECLARED[kind]
    schemas = {**_SCHEMAS, kind: model}
    outcomes = []
    for environ in (good, bad):
        environ = {"path": "/x", "method": "GET", **environ}
        public = _parsed(FlaskPlugin, schemas, **environ)
        assert _parsed(compat_spectree.LeanFlaskPlugin, schemas, **environ) == public
        outcomes.append(public[0])
    assert outcomes == ["valid", "invalid"]


def test_the_service_takes_the_lean_plugin_on_the_tested_version():
    assert type(contract.backend) is compat_spectree.LeanFlaskPlugin
