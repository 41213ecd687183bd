"""URL converters shared by the blueprints, and the bounds of a request's URL the document tells."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1
# The longest request line gunicorn accepts (its maximum, `limit_request_line` in gunicorn.conf.py): what
# bounds a GET's prompt. The document (/openapi.json) tells clients; POST takes longer prompts.
REQUEST_LINE_BYTES = 8190


def at_most(limit: int) -> str:
    """A regex of the whole numbers 1..limit, written without leading zeros."""
    digits = str(limit)
    alternatives = [rf"[1-9]\d{{0,{len(digits) - 2}}}", digits] if len(digits) > 1 else [digits]
    for i, digit in enumerate(digits):
        lowest = 1 if i == 0 else 0
        if int(digit) > lowest:
            alternatives.append(rf"{digits[:i]}[{lowest}-{int(digit) - 1}]\d{{{len(digits) - i - 1}}}")
    return "(?:" + "|".join(alternatives) + ")"


class IdConverter(IntegerConverter):
    """A database id: 1 to 2**31-1, so an out-of-range id is a 404, never a driver error.

    The range is in the regex, not only in `to_python`: werkzeug answers a value the converter
    refuses with 405 when the path has routes for other methods, and an id that does not exist is a 404.
    """

    regex = at_most(MAX_ID)

    def __init__(self, url_map, *args, **kwargs) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def register_converters(app: Flask) -> None:
    """Make `<id:...>` available to every route."""
    app.url_map.converters["id"] = IdConverter
