"""compat.werkzeug: the direct header copy is the copy werkzeug's get_wsgi_headers makes."""

from __future__ import annotations

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from appfactory.compat import werkzeug as compat_werkzeug

ENVIRON = EnvironBuilder(path="/x", base_url="http://127.0.0.1:8000").get_environ()

RESPONSES = [
    lambda: Response('{"a":1}', 200, {"X-Cache": "HIT", "X-Request-ID": "r1"}, mimetype="application/json"),
    lambda: Response("created", 201, {"Location": "/api/v1/templates/7"}),
    lambda: Response("", 204),
    lambda: Response("moved", 302, {"Location": "http://elsewhere/"}),
    lambda: Response(b"\xe2\x9c\x93", 404, {"Content-Location": "/x"}),
    lambda: Response(iter([b"streamed"]), 200),
    lambda: Response("Zoë", 409, [("X-A", "1"), ("X-A", "2")]),
]


@pytest.mark.parametrize("make", RESPONSES)
def test_the_fast_copy_equals_werkzeugs_or_defers_to_it(make):
    response = make()
    public = list(Response.get_wsgi_headers(response, ENVIRON).items())
    fast = compat_werkzeug.unchanged_copy(response.status_code, response.headers)
    if fast is not None:
        assert list(fast.items()) == public


def test_a_plain_json_response_takes_the_fast_copy():
    response = RESPONSES[0]()
    assert compat_werkzeug.unchanged_copy(200, response.headers) is not None


def test_the_public_way_always_defers_to_werkzeug(monkeypatch):
    monkeypatch.setattr(compat_werkzeug, "PRIVATE", False)
    assert compat_werkzeug.unchanged_copy(200, RESPONSES[0]().headers) is None
