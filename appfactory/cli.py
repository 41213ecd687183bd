"""`flask db ...`, `flask cache ...` and `flask keys ...`: the service's command groups."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from appfactory.cache.cli import cache_cli
from appfactory.identity.cli import keys_cli

db_cli = AppGroup("db", help="Database schema commands.")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target alembic revision.")
def upgrade(revision: str) -> None:
    """Bring the database schema up to date."""
    from appfactory.db import migrate  # alembic stays out of the serving processes

    migrate.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


def register_cli(app: Flask) -> None:
    """Attach the service's command groups to `flask` (blueprints add their own: `flask ai`)."""
    app.cli.add_command(db_cli)
    app.cli.add_command(cache_cli)
    app.cli.add_command(keys_cli)
