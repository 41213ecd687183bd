"""The service's Flask class: its response's WSGI headers are werkzeug's, made cheaper."""

from __future__ import annotations

import pytest
from flask import Response
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from appfactory.application import ServiceResponse

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
