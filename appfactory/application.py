"""The service's Flask class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask


class ServiceFlask(Flask):
    """Flask, with each hook's sync/async check made once instead of on every request."""

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
