"""Prompt templates stored in the database."""

from flask import Blueprint

bp = Blueprint("templates", __name__, url_prefix="/api/v1/templates")

from blueprints.templates import views  # noqa: E402,F401  (registers the routes)
