"""Blueprint registry: the explicit list of what the service serves."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Register every blueprint of the service."""
    from blueprints import ai, contract, health, metrics, openai_compat, templates, users

    for blueprint in (
        health.bp,
        metrics.bp,
        contract.bp,
        contract.pages,
        templates.bp,
        users.bp,
        ai.bp,
        openai_compat.bp,
    ):
        app.register_blueprint(blueprint)
