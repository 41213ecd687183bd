"""Model providers: `local` (offline, deterministic) and `openai` (any OpenAI-compatible server), each
in its own module; `base` says what a provider is and how it fails."""

from __future__ import annotations

from typing import Any

from blueprints.ai.providers.base import Provider
from blueprints.ai.providers.local import LocalProvider


def build_provider(config: dict[str, Any]) -> Provider:
    """The provider AI_PROVIDER names, configured once per app."""
    if config["AI_PROVIDER"] == "openai":
        from blueprints.ai.providers.openai import OpenAIProvider  # urllib3 only where it is used

        return OpenAIProvider(
            config["AI_BASE_URL"],
            config["AI_API_KEY"],
            config["AI_MODEL"],
            config["AI_TIMEOUT_S"],
            pool=config["AI_MAX_CONCURRENCY"],  # one connection per call in flight
            retries=config["AI_RETRIES"],
        )
    return LocalProvider(config["AI_LOCAL_LATENCY_MS"], config["AI_MODEL"])
