"""API keys for tests: an admin key written straight into a database, as `flask keys create` does."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import create_engine

from appfactory.config import sqlalchemy_url
from appfactory.db.models import users
from appfactory.identity import store


def issue_key(
    database_url: str,
    admin: bool = True,
    user_id: int | None = None,
    expires_at: datetime | None = None,
    tokens_per_minute: int | None = None,
    tokens_per_day: int | None = None,
) -> str:
    """A new key's token (for a new user unless `user_id` is given)."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.begin() as conn:
            if user_id is None:
                email = f"key-{uuid.uuid4().hex[:12]}@example.com"
                user_id = conn.execute(
                    users.insert().values(email=email, name="key holder")
                ).inserted_primary_key[0]
            return store.issue(
                conn,
                user_id,
                admin=admin,
                expires_at=expires_at,
                tokens_per_minute=tokens_per_minute,
                tokens_per_day=tokens_per_day,
            ).token
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
