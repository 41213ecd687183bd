"""Database access for API keys: issue, find, list, revoke, set budgets. Secrets never reach the database."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from appfactory.db.models import api_keys, as_utc, utcnow
from appfactory.identity import tokens


class KeyRecord(NamedTuple):
    """A key as verification needs it."""

    key_id: int
    user_id: int
    admin: bool
    secret_hash: str
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None
    tokens_per_minute: int | None  # None: AI_TOKENS_PER_MINUTE applies
    tokens_per_day: int | None  # None: AI_TOKENS_PER_DAY applies

    def usable(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or as_utc(self.expires_at) > now)


class Issued(NamedTuple):
    """A new key: its id and the token, which exists only in this value."""

    key_id: int
    token: str


_VERIFY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.user_id,
    api_keys.c.admin,
    api_keys.c.secret_hash,
    api_keys.c.expires_at,
    api_keys.c.revoked_at,
    api_keys.c.last_used_at,
    api_keys.c.tokens_per_minute,
    api_keys.c.tokens_per_day,
)
_BY_ID = select(*_VERIFY_COLUMNS).where(api_keys.c.id == bindparam("id"))
_TOUCH = api_keys.update().where(api_keys.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


def issue(
    conn: Connection,
    user_id: int,
    admin: bool = False,
    expires_at: datetime | None = None,
    *,
    tokens_per_minute: int | None = None,
    tokens_per_day: int | None = None,
) -> Issued:
    """Create a key for `user_id` (budgets None: the service-wide defaults); the caller commits."""
    secret = tokens.new_secret()
    values = {
        "user_id": user_id,
        "hint": tokens.hint(secret),
        "secret_hash": tokens.hash_secret(secret),
        "admin": admin,
        "expires_at": expires_at,
        "tokens_per_minute": tokens_per_minute,
        "tokens_per_day": tokens_per_day,
    }
    key_id = conn.execute(api_keys.insert().values(**values)).inserted_primary_key[0]
    return Issued(key_id, tokens.token(key_id, secret))


def find(conn: Connection, key_id: int) -> KeyRecord | None:
    row = conn.execute(_BY_ID, {"id": key_id}).first()
    if row is None:
        return None
    key_id, user_id, admin, secret_hash, expires_at, revoked_at, last_used_at, per_minute, per_day = row
    return KeyRecord(
        key_id,
        user_id,
        bool(admin),
        secret_hash,
        expires_at,
        revoked_at is not None,
        last_used_at,
        per_minute,
        per_day,
    )


def touch(conn: Connection, key_id: int) -> None:
    """Note that the key was used now."""
    conn.execute(_TOUCH, {"key_id": key_id, "now": utcnow()})
    conn.commit()


def list_for_user(conn: Connection, user_id: int) -> list[dict]:
    """Every key of a user, oldest first, as `flask keys list` shows it (never a secret)."""
    columns = (
        api_keys.c.id,
        api_keys.c.hint,
        api_keys.c.admin,
        api_keys.c.created_at,
        api_keys.c.expires_at,
        api_keys.c.last_used_at,
        api_keys.c.revoked_at,
        api_keys.c.tokens_per_minute,
        api_keys.c.tokens_per_day,
    )
    rows = conn.execute(select(*columns).where(api_keys.c.user_id == user_id).order_by(api_keys.c.id))
    return [dict(row._mapping) for row in rows]


def revoke(conn: Connection, key_id: int) -> bool:
    """Mark a key revoked; False when there is no such key (a revoked one stays revoked)."""
    result = conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    conn.commit()
    if result.rowcount:
        return True
    return conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is not None


KEEP = object()  # set_budget: leave this budget as it is


def set_budget(
    conn: Connection,
    key_id: int,
    tokens_per_minute: int | None | object = KEEP,
    tokens_per_day: int | None | object = KEEP,
) -> bool:
    """Set a key's token budgets (None: back to the service-wide default, KEEP: left as it is);
    False when there is no such key. A revoked key keeps its row, and its budgets may still be set."""
    values = {
        name: value
        for name, value in (("tokens_per_minute", tokens_per_minute), ("tokens_per_day", tokens_per_day))
        if value is not KEEP
    }
    if not values:
        return conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is not None
    result = conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**values))
    conn.commit()
    return bool(result.rowcount)
