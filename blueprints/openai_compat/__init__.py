"""The OpenAI-compatible face: `POST /v1/chat/completions` (streamed or not) and `/v1/models`, over the
same keys, limits, cache, bulkhead and breaker as the native generation (docs/openai.md)."""

from flask import Blueprint

bp = Blueprint("openai_compat", __name__, url_prefix="/v1")

from blueprints.openai_compat import errors, views  # noqa: E402,F401  (registers the routes and the error shape)
