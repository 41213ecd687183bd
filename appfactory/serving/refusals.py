"""What gunicorn refuses on its own, answered in the service's JSON envelope, on either worker class.

Requests gunicorn cannot parse never reach Flask: a request line or a header over its limits (414,
431), a malformed request line or header (400). gunicorn decides the status, logs the refusal and
writes its access line as always; only the page it writes, HTML, is replaced by the JSON error every
other answer uses.
"""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from http import HTTPStatus

from gunicorn import util

_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}
_ADVICE = {
    414: "The request line is too long; send long prompts in the body of POST /api/v1/ai/generate.",
    431: "A request header is too long or there are too many.",
}
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_MESSAGE = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.DOTALL)
_LONGEST_MESSAGE = 300  # gunicorn's message may quote the client's bytes


class PageCatcher:
    """Takes the place of the client's socket while gunicorn writes its error page."""

    def __init__(self) -> None:
        self.written = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.written += data


class JsonRefusals:
    """Mixed into a gunicorn worker class, ahead of it."""

    def handle_error(self, req, client, addr, exc) -> None:
        started = time.perf_counter()
        page = PageCatcher()
        super().handle_error(req, page, addr, exc)
        status, message = refusal(page.written)
        answer = json_refusal(status, message, time.perf_counter() - started)
        try:
            util.write_nonblock(client, answer)
        except Exception:  # noqa: BLE001 (the client may be gone: as gunicorn's own writer)
            self.log.debug("Failed to send error message.")


def refusal(page: bytes) -> tuple[int, str]:
    """The status and message of the HTML error page gunicorn wrote."""
    status = _STATUS_LINE.match(page)
    message = _MESSAGE.search(page)
    text = html.unescape(message.group(1).decode("latin-1")) if message else ""
    return (int(status.group(1)) if status else 500), text


def json_refusal(status: int, message: str, seconds: float) -> bytes:
    """A whole HTTP response: the error envelope and the headers every answer carries."""
    detail = _ADVICE.get(status) or message[:_LONGEST_MESSAGE] or "The request could not be read."
    error = {"error": {"code": _CODES.get(status, "error"), "message": detail}}
    body = json.dumps(error, separators=(",", ":")).encode() + b"\n"  # as every other body
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n"
        f"X-Process-Time: {seconds * 1000:.2f}ms\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body
