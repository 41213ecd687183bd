"""AI text generation over a pluggable provider, cached and single-flight."""

from flask import Blueprint

from blueprints.ai.guard import UpstreamGuard
from blueprints.ai.providers import build_provider

bp = Blueprint("ai", __name__, url_prefix="/api/v1/ai")


@bp.record_once
def _bind(state) -> None:
    """One provider (its connection pool) and one guard (bulkhead, breaker) per app."""
    state.app.extensions.setdefault("ai_provider", build_provider(state.app.config))
    state.app.extensions.setdefault("ai_guard", UpstreamGuard(state.app.config))


from blueprints.ai import commands, views  # noqa: E402,F401  (registers the routes and `flask ai warm`)
