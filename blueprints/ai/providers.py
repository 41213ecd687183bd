"""Model providers: `local` (offline, deterministic) and `openai` (any OpenAI-compatible server)."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from appfactory.errors import ApiError

log = logging.getLogger(__name__)

_WORDS = (
    "signal model answer token cache river stone light quiet rapid prompt window garden "
    "engine method orbit pattern vector amber harbor summit field thread canvas"
).split()


class Provider(Protocol):
    """Turns a prompt into text."""

    name: str
    default_model: str

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> str: ...


class LocalProvider:
    """A built-in stand-in model: a deterministic answer after a simulated latency."""

    name = "local"

    def __init__(self, latency_ms: int, model: str | None = None) -> None:
        self.latency_s = latency_ms / 1000.0
        self.default_model = model or "local-echo"

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> str:
        if self.latency_s:
            time.sleep(self.latency_s)
        seed = hashlib.sha256(f"{model}\x00{max_tokens}\x00{temperature!r}\x00{prompt}".encode()).digest()
        words = [_WORDS[byte % len(_WORDS)] for byte in seed[: min(max_tokens, len(seed))]]
        return f"[{model}] {' '.join(words)}"


class OpenAIProvider:
    """POST {base_url}/chat/completions over one pooled session per process."""

    name = "openai"

    def __init__(
        self, base_url: str, api_key: str | None, model: str | None, timeout_s: float, pool: int
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.default_model = model or "default"
        self.timeout = (min(timeout_s, 5.0), timeout_s)  # (connect, read)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> str:
        payload = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        try:
            response = self.session.post(self.url, json=payload, timeout=self.timeout)
        except requests.Timeout:
            raise ApiError(504, "The model server did not answer in time.") from None
        except requests.RequestException as exc:
            log.warning("Model server unreachable: %s", exc.__class__.__name__)
            raise ApiError(502, "The model server could not be reached.") from None
        if response.status_code != 200:
            log.warning("Model server answered %s", response.status_code)
            raise ApiError(502, f"The model server answered {response.status_code}.")
        return _content(response)


def _content(response: requests.Response) -> str:
    try:
        text = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ApiError(502, "The model server sent an answer that is not a chat completion.") from None
    if not isinstance(text, str):
        raise ApiError(502, "The model server sent an answer that is not a chat completion.")
    return text


def build_provider(config: dict[str, Any]) -> Provider:
    """The provider AI_PROVIDER names, configured once per app."""
    if config["AI_PROVIDER"] == "openai":
        return OpenAIProvider(
            config["AI_BASE_URL"],
            config["AI_API_KEY"],
            config["AI_MODEL"],
            config["AI_TIMEOUT_S"],
            pool=config["GUNICORN_THREADS"],
        )
    return LocalProvider(config["AI_LOCAL_LATENCY_MS"], config["AI_MODEL"])
