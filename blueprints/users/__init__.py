"""Users stored in the database."""

from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/api/v1/users")

from blueprints.users import commands, views  # noqa: E402,F401  (registers the routes and `flask users`)
