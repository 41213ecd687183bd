"""What every model provider is, and how one says the model server failed."""

from __future__ import annotations

from typing import Any, Protocol

from appfactory.web.errors import ApiError


class UpstreamError(ApiError):
    """A model server failure, with its kind (logged and counted, never a secret).

    Kinds: authentication, unknown_model, rejected, throttled, overloaded, server_error, unreachable,
    timeout, bad_answer. The last four of those that say the server is down open the breaker.
    """

    DOWN = frozenset({"overloaded", "server_error", "unreachable", "timeout"})

    def __init__(self, kind: str, status: int, message: str, code: str | None = None, **options: Any) -> None:
        super().__init__(status, message, code, **options)
        self.kind = kind


class Provider(Protocol):
    """Turns a prompt into text."""

    name: str
    default_model: str
    upstream: str  # which server answers: part of the cache key

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> str: ...
