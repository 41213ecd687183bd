"""`flask keys ...`: issue, list and revoke API keys. A secret is printed once, at creation."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import Connection, select

from appfactory.db.engine import db
from appfactory.db.models import as_utc, users, utcnow
from appfactory.identity import store, tokens

keys_cli = AppGroup("keys", help="API keys: create, list, revoke.")


def _when(moment) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else "never"


def _require_user(conn: Connection, user_id: int) -> None:
    if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
        raise click.ClickException(f"user {user_id} does not exist")


@keys_cli.command("create")
@click.option("--user", "user_id", type=click.IntRange(1), required=True, help="The user the key belongs to.")
@click.option("--admin", is_flag=True, help="The key may write anything.")
@click.option("--expires-in-days", type=click.IntRange(1), default=None, help="Expire after this many days.")
def create(user_id: int, admin: bool, expires_in_days: int | None) -> None:
    """Create a key and print it: it is shown this once."""
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    with db.transaction() as conn:
        _require_user(conn, user_id)
        issued = store.issue(conn, user_id, admin=admin, expires_at=expires_at)
    click.echo(issued.token)
    kind = "admin key" if admin else "key"
    click.echo(f"{kind} {issued.key_id} for user {user_id}; store it now, it is not shown again", err=True)


@keys_cli.command("list")
@click.option("--user", "user_id", type=click.IntRange(1), required=True, help="Whose keys.")
def list_keys(user_id: int) -> None:
    """One key a line: id, prefix, created, last used, admin, expires, revoked. Never a secret."""
    with db.engine.connect() as conn:
        _require_user(conn, user_id)
        keys = store.list_for_user(conn, user_id)
        if not keys:
            click.echo(f"user {user_id} has no keys", err=True)
        for key in keys:
            click.echo(
                f"{key['id']} {tokens.prefix(key['id'], key['hint'])} created={_when(key['created_at'])} "
                f"last_used={_when(key['last_used_at'])} admin={'yes' if key['admin'] else 'no'} "
                f"expires={_when(key['expires_at'])} revoked={_when(key['revoked_at'])}"
            )


@keys_cli.command("revoke")
@click.argument("key_id", type=click.IntRange(1))
def revoke(key_id: int) -> None:
    """Revoke a key: every worker and instance refuses it from its next request."""
    with db.engine.connect() as conn:
        found = store.revoke(conn, key_id)
    if not found:
        raise click.ClickException(f"key {key_id} does not exist")
    if not current_app.extensions["identity"].revoked():
        raise click.ClickException(
            f"key {key_id} is revoked in the database, but Redis could not be told: workers that "
            "remember it accept it for up to a minute; run this again once Redis answers"
        )
    click.echo(f"key {key_id} revoked")
