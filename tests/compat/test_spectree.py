"""compat.spectree: the lean plugin parses a request into the same context, and fails it with the same
errors, as SpecTree's own Flask plugin."""

from __future__ import annotations

import pytest
from flask import Flask, request
from pydantic import BaseModel, ValidationError
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


class Agent(BaseModel):
    user_agent: str


_SCHEMAS = {"query": Page, "json": Note, "form": None, "headers": None, "cookies": None}

REQUESTS = [
    {"path": "/x?limit=5&tag=a&tag=b", "method": "GET"},
    {"path": "/x?limit=many", "method": "GET"},
    {"path": "/x?limt=5", "method": "GET", "headers": {"Cookie": "session=1", "X-A": "b"}},
    {"path": "/x", "method": "POST", "json": {"text": "hi", "stars": 3}},
    {"path": "/x", "method": "POST", "json": {"text": "hi", "stars": "3"}},
    {"path": "/x", "method": "POST", "json": {"text": "hi", "colour": "red"}},
    {"path": "/x", "method": "POST", "data": "not json", "content_type": "application/json"},
    {"path": "/x", "method": "POST", "data": "text=hi", "content_type": "text/plain"},
    {"path": "/x", "method": "POST", "data": {"text": "hi"}},  # a form: the body is not read as JSON
    {"path": "/x", "method": "DELETE", "json": {"text": "hi"}},
    {"path": "/x", "method": "PATCH", "data": "[1, 2]", "content_type": "application/json"},
]


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


@pytest.mark.parametrize("environ", REQUESTS, ids=lambda environ: f"{environ['method']} {environ['path']}")
def test_the_lean_plugin_parses_as_spectrees_own(environ):
    assert compat_spectree.FAST
    public = _parsed(FlaskPlugin, _SCHEMAS, **environ)
    assert _parsed(compat_spectree.LeanFlaskPlugin, _SCHEMAS, **environ) == public


def test_a_view_that_declares_headers_gets_them_checked_as_spectree_does():
    schemas = {**_SCHEMAS, "headers": Agent}
    for headers in ({"User-Agent": "curl"}, {}):
        environ = {"path": "/x", "method": "GET", "headers": headers}
        public = _parsed(FlaskPlugin, schemas, **environ)
        assert _parsed(compat_spectree.LeanFlaskPlugin, schemas, **environ) == public
    assert public[0] == "invalid"


def test_the_service_takes_the_lean_plugin_on_the_tested_version():
    assert type(contract.backend) is compat_spectree.LeanFlaskPlugin
