"""Blueprint registry: the explicit list of what the service serves."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Register every blueprint of the service."""
    from blueprints import ai, health, metrics, templates, users

    for blueprint in (health.bp, metrics.bp, templates.bp, users.bp, ai.bp):
        app.register_blueprint(blueprint)
