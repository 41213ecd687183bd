"""The application factory: the only place that wires the service together."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__version__ = "0.1.0"


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build a configured app; tests pass overrides instead of environment variables."""
    # Imported here, not at the top: gunicorn's master imports appfactory.config, and whatever this
    # package imports on load would sit in the master and in every worker forked from it.
    from appfactory import config
    from appfactory.cli import register_cli
    from appfactory.extensions import init_extensions
    from appfactory.identity.hooks import note_required_keys
    from appfactory.observability.logging import configure_logging
    from appfactory.observability.tracing import init_tracing
    from appfactory.pipeline import register_pipeline
    from appfactory.web.application import ServiceFlask
    from appfactory.web.errors import register_error_handlers
    from appfactory.web.proxies import trust_proxies
    from appfactory.web.routing import register_converters
    from blueprints import register_blueprints

    settings = config.load(os.environ, overrides)
    configure_logging(settings["LOG_LEVEL"], settings["LOG_FORMAT"])

    app = ServiceFlask(__name__, static_folder=None)  # it serves no files of its own
    app.config.update(config.flask_config(settings, app.instance_path), VERSION=__version__)
    if settings["DATABASE_URL"] is None:  # the default SQLite file lives there (a read-only image has none)
        os.makedirs(app.instance_path, exist_ok=True)
    app.wsgi_app = trust_proxies(app.wsgi_app, app.config["TRUSTED_PROXIES"])

    register_converters(app)
    init_extensions(app)
    register_pipeline(app)  # every request hook, in the order it runs
    register_error_handlers(app)
    register_blueprints(app)
    note_required_keys(app)  # which views need a key, known once every route is
    register_cli(app)
    init_tracing(app)  # last: its request span opens before every other hook
    return app
