"""The `local` provider: offline and deterministic, for development, tests and benchmarks."""

from __future__ import annotations

import hashlib
import time

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

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> str:
        if self.latency_s:
            time.sleep(self.latency_s)
        seed = hashlib.sha256(f"{model}\x00{max_tokens}\x00{temperature!r}\x00{prompt}".encode()).digest()
        words = [_WORDS[byte % len(_WORDS)] for byte in seed[: min(max_tokens, len(seed))]]
        return f"[{model}] {' '.join(words)}"
