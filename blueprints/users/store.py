"""Database access for users."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from appfactory.db.engine import retried_read
from appfactory.db.models import as_utc, users
from appfactory.extensions import db
from appfactory.identity import store as key_store
from appfactory.observability.timing import timed
from appfactory.web.errors import ApiError

_COLUMNS = (users.c.id, users.c.email, users.c.name, users.c.created_at, users.c.updated_at)
# Built once: a request only binds the id.
_BY_ID = select(*_COLUMNS).where(users.c.id == bindparam("id"))


def to_dict(row: Any) -> dict[str, Any]:
    """A user row as the API shows it."""
    item = dict(row._mapping)
    item["created_at"] = as_utc(item["created_at"]).isoformat()
    item["updated_at"] = as_utc(item["updated_at"]).isoformat()
    return item


@timed("db")
@retried_read
def get(user_id: int) -> dict[str, Any]:
    """One user, or 404."""
    return _get(db.connection(), user_id)


def _get(conn: Connection, user_id: int) -> dict[str, Any]:
    row = conn.execute(_BY_ID, {"id": user_id}).first()
    if row is None:
        raise ApiError(404, f"User {user_id} does not exist.")
    return to_dict(row)


@timed("db")
def create(fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Insert a user and their first API key, together or not at all; 409 when the email is taken.
    Returns the user and the key's token, which exists only here."""
    try:
        with db.transaction() as conn:
            user_id = conn.execute(users.insert().values(**fields)).inserted_primary_key[0]
            issued = key_store.issue(conn, user_id)
    except IntegrityError:
        raise ApiError(409, "A user with this email already exists.", field="email") from None
    return _get(db.connection(), user_id), issued.token


@timed("db")
def update(user_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Change the given fields; 404 when missing, 409 when the email is taken."""
    conn = db.connection()
    try:
        result = conn.execute(users.update().where(users.c.id == user_id).values(**fields))
        conn.commit()
    except IntegrityError:
        conn.rollback()
        raise ApiError(409, "A user with this email already exists.", field="email") from None
    if result.rowcount == 0:
        raise ApiError(404, f"User {user_id} does not exist.")
    return _get(conn, user_id)


@timed("db")
def delete(user_id: int) -> None:
    """Remove a user, or 404."""
    conn = db.connection()
    result = conn.execute(users.delete().where(users.c.id == user_id))
    conn.commit()
    if result.rowcount == 0:
        raise ApiError(404, f"User {user_id} does not exist.")
