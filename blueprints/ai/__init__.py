"""AI text generation over a pluggable provider, cached and single-flight."""

from flask import Blueprint

from blueprints.ai.guard import UpstreamGuard
from blueprints.ai.providers import build_provider

bp = Blueprint("ai", __name__, url_prefix="/api/v1/ai")


@bp.record_once
def _bind(state) -> None:
    """One provider (its connection pool), one guard (bulkhead, breaker) and the models offered, per app."""
    provider = state.app.extensions.setdefault("ai_provider", build_provider(state.app.config))
    state.app.extensions.setdefault("ai_guard", UpstreamGuard(state.app.config))
    # The models clients may ask for: a client must never reach every model the upstream serves.
    state.app.extensions.setdefault(
        "ai_models", frozenset(state.app.config["AI_MODELS"] or (provider.default_model,))
    )


from blueprints.ai import commands, views  # noqa: E402,F401  (registers the routes and `flask ai warm`)
