"""ids are never reused after a delete

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

SQLite hands out max(id) + 1, so deleting the newest row gave its id to the next one (a deleted
user's id, and with it anything still naming it, went to a stranger). AUTOINCREMENT makes SQLite
keep the highest id ever used. PostgreSQL's sequences never go back: nothing to do there.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = ("users", "templates")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        # SQLite cannot alter a primary key: the table is copied into a new one, rows and ids kept.
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
