"""The `local` provider: offline and deterministic, for development, tests and benchmarks."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

from blueprints.ai.providers.base import Chat, Completion

_WORDS = (
    "signal model answer token cache river stone light quiet rapid prompt window garden "
    "engine method orbit pattern vector amber harbor summit field thread canvas"
).split()


class LocalProvider:
    """A built-in stand-in model: a deterministic answer after a simulated latency."""

    name = "local"
    upstream = "local"

    def __init__(self, latency_ms: int, model: str | None = None) -> None:
        self.latency_s = latency_ms / 1000.0
        self.default_model = model or "local-echo"

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> Completion:
        if self.latency_s:
            time.sleep(self.latency_s)
        seed = hashlib.sha256(f"{model}\x00{max_tokens}\x00{temperature!r}\x00{prompt}".encode()).digest()
        words = [_WORDS[byte % len(_WORDS)] for byte in seed[: min(max_tokens, len(seed))]]
        return Completion(f"[{model}] {' '.join(words)}")  # no usage: the guard estimates it

    def stream(self, chat: Chat) -> Iterator[str]:
        """The same kind of answer, word by word, its latency spread over the words."""
        asked = json.dumps([chat.model, chat.payload()], sort_keys=True)
        seed = hashlib.sha256(asked.encode()).digest()
        picked = [_WORDS[byte % len(_WORDS)] for byte in seed[: min(chat.max_tokens, 16)]]
        words = [f"[{chat.model}]", *picked]
        pause = self.latency_s / len(words)
        for n, word in enumerate(words):
            if pause:
                time.sleep(pause)
            yield word if n == 0 else " " + word
