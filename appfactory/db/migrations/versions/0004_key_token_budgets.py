"""token budgets per API key

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

A key may carry its own AI token budgets, per minute and per day. NULL (every existing key): the
service-wide default applies, AI_TOKENS_PER_MINUTE / AI_TOKENS_PER_DAY. Set with `flask keys create
--tokens-per-minute/--tokens-per-day` or `flask keys budget`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = ("tokens_per_minute", "tokens_per_day")


def upgrade() -> None:
    # Adding a nullable column is an ALTER TABLE that SQLite can do in place.
    with op.batch_alter_table("api_keys") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    # On SQLite the table is copied into a new one without the columns: it stays AUTOINCREMENT (0002),
    # and keeps the highest id it ever gave, which the copy alone would forget (a deleted newest key).
    bind = op.get_bind()
    highest = None
    if bind.dialect.name == "sqlite":
        highest = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'api_keys'")).scalar()
    with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
    if highest is not None:
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'api_keys'"))
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('api_keys', :seq)"), {"seq": highest}
        )
