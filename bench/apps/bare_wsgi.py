"""The ceiling: a bare WSGI callable answering every path with a small JSON body."""

from __future__ import annotations

from collections.abc import Callable, Iterable

_BODY = b'{"message":"hello"}'
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))]


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Answer 200 with the same bytes, whatever was asked."""
    start_response("200 OK", _HEADERS)
    return [_BODY]
