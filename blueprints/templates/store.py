"""Database access for templates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from appfactory.db.engine import retried_read
from appfactory.db.models import as_utc, templates
from appfactory.extensions import db
from appfactory.observability.timing import timed
from appfactory.web.errors import ApiError
from blueprints.templates.rendering import variables_of

_COLUMNS = (
    templates.c.id,
    templates.c.name,
    templates.c.body,
    templates.c.description,
    templates.c.owner_id,
    templates.c.created_at,
    templates.c.updated_at,
)
# Rows are read by position: Row._mapping builds a key view and a mapping per row, zip does not.
_KEYS = tuple(column.key for column in _COLUMNS)
# Built once: a request only binds values (building a statement per request costs more than its cache).
_BY_ID = select(*_COLUMNS).where(templates.c.id == bindparam("id"))
_COUNT = select(func.count()).select_from(templates)
_PAGE = select(*_COLUMNS).order_by(templates.c.id).limit(bindparam("limit")).offset(bindparam("offset"))


def to_dict(row: Any) -> dict[str, Any]:
    """A template row as the API shows it."""
    item = dict(zip(_KEYS, row))  # noqa: B905 (same columns)
    item["variables"] = variables_of(item["body"])
    item["created_at"] = as_utc(item["created_at"]).isoformat()
    item["updated_at"] = as_utc(item["updated_at"]).isoformat()
    return item


@timed("db")
@retried_read
def list_page(limit: int, offset: int) -> dict[str, Any]:
    """One page of templates, oldest first, with the total count."""
    conn = db.connection()
    total = conn.execute(_COUNT).scalar_one()
    rows = conn.execute(_PAGE, {"limit": limit, "offset": offset})
    return {"items": [to_dict(row) for row in rows], "total": total, "limit": limit, "offset": offset}


@timed("db")
@retried_read
def get(template_id: int) -> dict[str, Any]:
    """One template, or 404."""
    return _get(db.connection(), template_id)


def _get(conn: Connection, template_id: int) -> dict[str, Any]:
    row = conn.execute(_BY_ID, {"id": template_id}).first()
    if row is None:
        raise ApiError(404, f"Template {template_id} does not exist.")
    return to_dict(row)


@timed("db")
def create(fields: dict[str, Any]) -> dict[str, Any]:
    """Insert a template; 409 when the name is taken."""
    conn = db.connection()
    with _unique_name(conn, fields.get("name")):
        template_id = conn.execute(templates.insert().values(**fields)).inserted_primary_key[0]
    return _get(conn, template_id)


@timed("db")
def update(template_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Change the given fields; 404 when missing, 409 when the new name is taken."""
    conn = db.connection()
    with _unique_name(conn, fields.get("name")):
        result = conn.execute(templates.update().where(templates.c.id == template_id).values(**fields))
    if result.rowcount == 0:
        raise ApiError(404, f"Template {template_id} does not exist.")
    return _get(conn, template_id)


@timed("db")
def delete(template_id: int) -> None:
    """Remove a template, or 404."""
    conn = db.connection()
    result = conn.execute(templates.delete().where(templates.c.id == template_id))
    conn.commit()
    if result.rowcount == 0:
        raise ApiError(404, f"Template {template_id} does not exist.")


class _unique_name:
    """Commit the write, turning a unique-name violation into 409."""

    def __init__(self, conn: Any, name: str | None) -> None:
        self.conn, self.name = conn, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.conn.commit()
            return False
        self.conn.rollback()
        if isinstance(exc, IntegrityError):
            raise ApiError(409, f"A template named {self.name!r} already exists.", field="name") from None
        return False
