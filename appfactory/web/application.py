"""The service's Flask class and its JSON provider."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from werkzeug.datastructures import Headers

from appfactory.compat import werkzeug as compat_werkzeug

# Dates and dataclasses go to Flask's `default`, as with the json module (HTTP dates, not ISO); keys
# may be str subclasses (SQLAlchemy's column names) or numbers, as the json module allows.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_APPEND_NEWLINE
)


class ServiceJSONProvider(DefaultJSONProvider):
    """Flask's JSON, keys in the order the code wrote them; compact response bodies through orjson.

    orjson writes a body ~10× faster than the json module. What it refuses (integers beyond 64 bits,
    text with lone surrogates) goes to Flask's way, which writes it as before. Two differences, both
    valid JSON: non-ASCII text is written as UTF-8, not as \\u escapes, and NaN or infinity as null
    instead of the NaN token no JSON parser accepts. `json.dumps` with any option builds a new encoder
    on every call; responses always use the same options, so each encoder is built once.
    """

    sort_keys = False

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self._encoders: dict[tuple, json.JSONEncoder] = {}

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        if "cls" in kwargs:
            return json.dumps(obj, **kwargs)
        options = tuple(kwargs.items())
        encoder = self._encoders.get(options)
        if encoder is None:
            encoder = self._encoders.setdefault(options, json.JSONEncoder(**kwargs))
        return encoder.encode(obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:  # absurdly deep nesting: invalid JSON to every reader (a 400), not a crash
            raise ValueError("JSON nested too deeply") from None

    def response(self, *args: Any, **kwargs: Any) -> Response:
        # One value is what every view's dict or list arrives as (Flask's make_response passes it
        # alone); any other call, and indented or sorted output, is Flask's own.
        if len(args) != 1 or kwargs or self._flasks_way():
            return super().response(*args, **kwargs)
        return self._app.response_class(self._compact(args[0]), mimetype=self.mimetype)

    def body(self, obj: Any) -> bytes:
        """`obj` written as `response` writes a body (the error envelope uses it too)."""
        return super().response(obj).get_data() if self._flasks_way() else self._compact(obj)

    def _compact(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=_ORJSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: what orjson refuses, Flask's way writes
            return super().response(obj).get_data()

    def _flasks_way(self) -> bool:
        return self.sort_keys or self.compact is False or (self.compact is None and self._app.debug)


class ServiceResponse(Response):
    """Flask's response; its WSGI headers copied without validating each value a second time."""

    def get_wsgi_headers(self, environ: dict[str, Any]) -> Headers:
        copy = compat_werkzeug.unchanged_copy(self.status_code, self.headers)
        return copy if copy is not None else super().get_wsgi_headers(environ)


class ServiceFlask(Flask):
    """Flask, with each hook's sync/async check made once instead of on every request, and OPTIONS
    answered without a body."""

    json_provider_class = ServiceJSONProvider
    response_class = ServiceResponse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def make_default_options_response(self) -> Response:
        # Flask answers OPTIONS with an empty 200 labelled text/html: the same Allow, as 204 No Content.
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks inspect.iscoroutinefunction for every hook and view on every request.
        try:
            return self._sync[func]
        except KeyError:
            return self._sync.setdefault(func, super().ensure_sync(func))
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)
