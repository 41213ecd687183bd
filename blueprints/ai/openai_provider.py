"""The `openai` provider: any OpenAI-compatible chat-completions server."""

from __future__ import annotations

import logging

import requests
from requests.adapters import HTTPAdapter

from appfactory.web.errors import ApiError

log = logging.getLogger(__name__)


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
