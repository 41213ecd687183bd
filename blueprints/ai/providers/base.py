"""What every model provider is, and how one says the model server failed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

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


class Usage(NamedTuple):
    """What one model call used, in tokens: the model server's own figures."""

    prompt_tokens: int
    completion_tokens: int


class Completion(NamedTuple):
    """A whole answer, and its usage when the model server reported it (None: estimate it)."""

    text: str
    usage: Usage | None = None


@dataclass(frozen=True)
class Chat:
    """One chat completion to stream: the conversation and the sampling options sent upstream."""

    messages: tuple[tuple[str, str], ...]  # (role, text), in order
    model: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def payload(self) -> dict[str, Any]:
        """The OpenAI chat-completions request body for this chat (without `stream`)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": role, "content": text} for role, text in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.stop:
            body["stop"] = list(self.stop)
        if self.seed is not None:
            body["seed"] = self.seed
        return body


class Provider(Protocol):
    """Turns a prompt into text, or a chat into a stream of text pieces."""

    name: str
    default_model: str
    upstream: str  # which server answers: part of the cache key

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> Completion: ...

    def stream(self, chat: Chat) -> Iterator[str | Usage]:
        """The answer's pieces as the model sends them, then its Usage if the model server reported
        one; closing the iterator ends the model call."""
        ...
