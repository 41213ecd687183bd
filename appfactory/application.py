"""The service's Flask class and its JSON provider."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider


class ServiceJSONProvider(DefaultJSONProvider):
    """Flask's JSON, keys in the order the code wrote them, with one encoder per set of options.

    `json.dumps` with any option builds a new encoder on every call; responses always use the same
    options, so each encoder is built once.
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


class ServiceFlask(Flask):
    """Flask, with each hook's sync/async check made once instead of on every request."""

    json_provider_class = ServiceJSONProvider

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks inspect.iscoroutinefunction for every hook and view on every request.
        try:
            return self._sync[func]
        except KeyError:
            return self._sync.setdefault(func, super().ensure_sync(func))
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)
