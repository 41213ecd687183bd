"""What a request costs the database: the SQL statements an app's engine sends, counted as they go."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def statements(engine: Engine, naming: str = "") -> Iterator[list[str]]:
    """A list that fills with the SQL of every statement `engine` sends within the block (those
    naming `naming`, when given)."""
    sent: list[str] = []

    def note(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        if naming in statement:
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)
