"""AI text generation over a pluggable provider, cached and single-flight."""

from flask import Blueprint

from blueprints.ai.providers import build_provider

bp = Blueprint("ai", __name__, url_prefix="/api/v1/ai")
# One provider (and its pooled HTTP session) per app, built when the blueprint is registered.
bp.record_once(lambda state: state.app.extensions.setdefault("ai_provider", build_provider(state.app.config)))

from blueprints.ai import commands, views  # noqa: E402,F401  (registers the routes and `flask ai warm`)
