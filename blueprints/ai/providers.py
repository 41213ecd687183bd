"""Model providers: `local` (offline, deterministic) here, `openai` in its own module."""

from __future__ import annotations

import hashlib
import time
from typing import Any, Protocol

from appfactory.web.errors import ApiError

_WORDS = (
    "signal model answer token cache river stone light quiet rapid prompt window garden "
    "engine method orbit pattern vector amber harbor summit field thread canvas"
).split()


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


class LocalProvider:
    """A built-in stand-in model: a deterministic answer after a simulated latency."""

    name = "local"
    upstream = "local"

    def __init__(self, latency_ms: int, model: str | None = None) -> None:
        self.latency_s = latency_ms / 1000.0
        self.default_model = model or "local-echo"

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> str:
        if self.latency_s:
            time.sleep(self.latency_s)
        seed = hashlib.sha256(f"{model}\x00{max_tokens}\x00{temperature!r}\x00{prompt}".encode()).digest()
        words = [_WORDS[byte % len(_WORDS)] for byte in seed[: min(max_tokens, len(seed))]]
        return f"[{model}] {' '.join(words)}"


def build_provider(config: dict[str, Any]) -> Provider:
    """The provider AI_PROVIDER names, configured once per app."""
    if config["AI_PROVIDER"] == "openai":
        from blueprints.ai.openai_provider import OpenAIProvider  # requests only where it is used

        return OpenAIProvider(
            config["AI_BASE_URL"],
            config["AI_API_KEY"],
            config["AI_MODEL"],
            config["AI_TIMEOUT_S"],
            pool=config["GUNICORN_THREADS"],
            retries=config["AI_RETRIES"],
        )
    return LocalProvider(config["AI_LOCAL_LATENCY_MS"], config["AI_MODEL"])
