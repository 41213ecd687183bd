"""`flask db upgrade` brings a fresh database to the latest schema."""

from sqlalchemy import create_engine, inspect

from appfactory import create_app
from appfactory.config import sqlalchemy_url
from tests.conftest import base_overrides


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    runner = create_app(base_overrides(DATABASE_URL=url)).test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "database at head" in result.output
    engine = create_engine(sqlalchemy_url(url))
    assert {"users", "templates", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_db_upgrade_on_postgresql(postgres):
    runner = create_app(base_overrides(DATABASE_URL=postgres.url)).test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
