"""URL converters shared by the blueprints."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter


class IdConverter(IntegerConverter):
    """A database id: 1 to 2**31-1, so an out-of-range id is a 404, never a driver error."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        super().__init__(url_map, min=1, max=2**31 - 1)


def register_converters(app: Flask) -> None:
    """Make `<id:...>` available to every route."""
    app.url_map.converters["id"] = IdConverter
