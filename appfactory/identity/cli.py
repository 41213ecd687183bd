"""`flask keys ...`: issue, list and revoke API keys, and set their token budgets. A secret is printed
once, at creation."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import Connection, select

from appfactory.db.engine import db
from appfactory.db.models import as_utc, users, utcnow
from appfactory.identity import store, tokens
from appfactory.redis.client import REDIS_ERRORS

keys_cli = AppGroup("keys", help="API keys: create, list, revoke, budget, usage.")

DEFAULT = "default"  # a budget given as this: the service-wide one applies (NULL in the database)
MAX_BUDGET = 2**31 - 1  # the largest a database Integer holds


def _when(moment) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else "never"


def _budget(value: int | None) -> str:
    return DEFAULT if value is None else str(value)


class _Budget(click.ParamType):
    """A budget option's value: a positive number of tokens, or `default`."""

    name = "N|default"

    def get_metavar(self, param, *args, **kwargs) -> str:  # as written, not upper-cased
        return self.name

    def convert(self, value, param, ctx):
        if value == DEFAULT:
            return DEFAULT
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if not 1 <= number <= MAX_BUDGET:
            self.fail(
                f"{value!r} is neither a number of tokens from 1 to {MAX_BUDGET} nor {DEFAULT!r}", param, ctx
            )
        return number


def _to_store(value: int | str | None) -> object:
    """A budget option as store.set_budget takes it: left out, kept; `default`, NULL; else the number."""
    if value is None:
        return store.KEEP
    return None if value == DEFAULT else value


def _require_user(conn: Connection, user_id: int) -> None:
    if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
        raise click.ClickException(f"user {user_id} does not exist")


@keys_cli.command("create")
@click.option("--user", "user_id", type=click.IntRange(1), required=True, help="The user the key belongs to.")
@click.option("--admin", is_flag=True, help="The key may write anything.")
@click.option("--expires-in-days", type=click.IntRange(1), default=None, help="Expire after this many days.")
@click.option(
    "--tokens-per-minute",
    type=click.IntRange(1, MAX_BUDGET),
    default=None,
    help="AI tokens a minute (default: AI_TOKENS_PER_MINUTE).",
)
@click.option(
    "--tokens-per-day",
    type=click.IntRange(1, MAX_BUDGET),
    default=None,
    help="AI tokens a day (default: AI_TOKENS_PER_DAY).",
)
def create(
    user_id: int,
    admin: bool,
    expires_in_days: int | None,
    tokens_per_minute: int | None,
    tokens_per_day: int | None,
) -> None:
    """Create a key and print it: it is shown this once."""
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    with db.transaction() as conn:
        _require_user(conn, user_id)
        issued = store.issue(
            conn,
            user_id,
            admin=admin,
            expires_at=expires_at,
            tokens_per_minute=tokens_per_minute,
            tokens_per_day=tokens_per_day,
        )
    click.echo(issued.token)
    kind = "admin key" if admin else "key"
    click.echo(f"{kind} {issued.key_id} for user {user_id}; store it now, it is not shown again", err=True)


@keys_cli.command("list")
@click.option("--user", "user_id", type=click.IntRange(1), required=True, help="Whose keys.")
def list_keys(user_id: int) -> None:
    """One key a line: id, prefix, created, last used, admin, expires, revoked, token budgets. Never a
    secret."""
    with db.engine.connect() as conn:
        _require_user(conn, user_id)
        keys = store.list_for_user(conn, user_id)
        if not keys:
            click.echo(f"user {user_id} has no keys", err=True)
        for key in keys:
            click.echo(
                f"{key['id']} {tokens.prefix(key['id'], key['hint'])} created={_when(key['created_at'])} "
                f"last_used={_when(key['last_used_at'])} admin={'yes' if key['admin'] else 'no'} "
                f"expires={_when(key['expires_at'])} revoked={_when(key['revoked_at'])} "
                f"tokens_per_minute={_budget(key['tokens_per_minute'])} "
                f"tokens_per_day={_budget(key['tokens_per_day'])}"
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


@keys_cli.command("budget")
@click.argument("key_id", type=click.IntRange(1))
@click.option("--tokens-per-minute", type=_Budget(), help="AI tokens a minute, or `default`.")
@click.option("--tokens-per-day", type=_Budget(), help="AI tokens a day, or `default`.")
def budget(key_id: int, tokens_per_minute: int | str | None, tokens_per_day: int | str | None) -> None:
    """Set a key's token budgets (`default`: AI_TOKENS_PER_MINUTE / AI_TOKENS_PER_DAY apply); an option
    left out keeps its budget. Every worker and instance applies them from its next request."""
    if tokens_per_minute is None and tokens_per_day is None:
        raise click.ClickException("give --tokens-per-minute, --tokens-per-day or both (a number or default)")
    with db.engine.connect() as conn:
        found = store.set_budget(conn, key_id, _to_store(tokens_per_minute), _to_store(tokens_per_day))
        record = store.find(conn, key_id) if found else None
    if record is None:
        raise click.ClickException(f"key {key_id} does not exist")
    if not current_app.extensions["identity"].revoked():
        raise click.ClickException(
            f"key {key_id}'s budgets are changed in the database, but Redis could not be told: workers "
            "that remember the key keep its old budgets for up to a minute; run this again once Redis answers"
        )
    click.echo(
        f"key {key_id}: tokens_per_minute={_budget(record.tokens_per_minute)} "
        f"tokens_per_day={_budget(record.tokens_per_day)}"
    )


@keys_cli.command("usage")
@click.argument("key_id", type=click.IntRange(1))
def usage(key_id: int) -> None:
    """The AI tokens a key's model calls used this minute and this UTC day (calls in flight count
    what they hold), as every worker and instance counts them in Redis."""
    budgets = current_app.extensions["token_budgets"]
    if budgets.client is None:
        raise click.ClickException("no REDIS_URL: each worker counts tokens in its own memory, out of reach")
    with db.engine.connect() as conn:
        record = store.find(conn, key_id)
    if record is None:
        raise click.ClickException(f"key {key_id} does not exist")
    try:
        used = budgets.usage(f"key:{key_id}")
    except REDIS_ERRORS as exc:
        raise click.ClickException(f"Redis did not answer: {exc}") from None
    config = current_app.config
    per_minute = record.tokens_per_minute or config["AI_TOKENS_PER_MINUTE"]
    per_day = record.tokens_per_day or config["AI_TOKENS_PER_DAY"]
    minute, day = f"{used['tokens']}/{_budget(per_minute)}", f"{used['tokens-day']}/{_budget(per_day)}"
    click.echo(f"key {key_id}: minute={minute} day={day}")
