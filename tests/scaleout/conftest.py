"""Fixtures every scale-out test shares."""

from __future__ import annotations

import pytest

from tests.support.services import PostgresDatabase


@pytest.fixture
def database():
    """A fresh database on the machine's PostgreSQL, not migrated: the instances do it as they start."""
    database = PostgresDatabase()
    yield database
    database.drop()
