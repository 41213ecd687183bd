"""The worker reads gunicorn's own error page: whatever gunicorn writes, the status and message survive."""

from __future__ import annotations

import json

import pytest
from gunicorn import util

from appfactory.serving.refusals import PageCatcher, json_refusal, refusal


@pytest.mark.parametrize(
    "status, reason, message",
    [
        (400, "Bad Request", "Invalid Request Line 'GARBAGE <script>'"),
        (414, "URI Too Long", "Request Line is too large (9040 > 8190)"),
        (
            431,
            "Request Header Fields Too Large",
            "Error parsing headers: 'limit request headers fields size'",
        ),
        (501, "Not Implemented", "Unsupported transfer coding: 'gzip'"),
    ],
)
def test_the_status_and_message_of_gunicorns_page_are_read_back(status, reason, message):
    sock = PageCatcher()
    util.write_error(sock, status, reason, message)  # gunicorn's own writer, as its worker calls it
    assert refusal(sock.written) == (status, message)


def test_the_json_answer_is_a_whole_http_response():
    answer = json_refusal(400, "Invalid Request Line 'x'", 0.000_12)
    head, body = answer.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "application/json" and int(headers["Content-Length"]) == len(body)
    assert headers["X-Process-Time"] == "0.12ms" and headers["Connection"] == "close"
    assert json.loads(body) == {"error": {"code": "bad_request", "message": "Invalid Request Line 'x'"}}
    long_quote = json.loads(json_refusal(400, "x" * 5000, 0).split(b"\r\n\r\n", 1)[1])
    assert len(long_quote["error"]["message"]) == 300  # the client's bytes are not echoed at length
