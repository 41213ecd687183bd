"""Configuration is read once and a bad value stops start-up naming the variable."""

import pytest

from appfactory import config, create_app


@pytest.mark.parametrize(
    "name, value",
    [
        ("DB_POOL_SIZE", "ten"),
        ("DB_POOL_SIZE", "0"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://localhost"),
        ("PORT", "70000"),
        ("AI_PROVIDER", "mystery"),
        ("SLOW_REQUEST_MS", "-1"),
    ],
)
def test_bad_environment_value_names_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError) as excinfo:
        create_app()
    assert name in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_openai_provider_needs_a_base_url():
    with pytest.raises(config.ConfigError, match="AI_BASE_URL"):
        config.load({"AI_PROVIDER": "openai"})


def test_defaults_and_overrides():
    settings = config.load({}, {"DB_POOL_SIZE": "3"})
    assert settings["DB_POOL_SIZE"] == 3
    assert settings["RATE_LIMIT_PER_MINUTE"] == 60
    assert settings["LOG_FORMAT"] == "json"


def test_default_database_is_sqlite_in_instance_folder(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app({"LOG_LEVEL": "WARNING"})
    assert app.config["DATABASE_URL"].startswith("sqlite:///")
    assert app.config["DATABASE_URL"].endswith("instance/app.db")
