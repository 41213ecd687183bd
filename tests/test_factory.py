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
        ("REDIS_URL", "redis+sentinel://127.0.0.1:26379"),  # no service name
        ("REDIS_URL", "redis+socket://127.0.0.1:7000"),  # no such scheme
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


def test_a_sentinel_url_becomes_a_client_of_the_services_primary():
    from redis.sentinel import SentinelConnectionPool

    from appfactory.redis.client import build_client

    settings = config.load({"REDIS_URL": "redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2/cache/3"})
    client = build_client(settings)  # nothing is contacted until a command
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "cache"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "s@cret"
    assert pool.connection_kwargs["socket_timeout"] == settings["REDIS_TIMEOUT_MS"] / 1000
    assert [
        (conn.connection_pool.connection_kwargs["host"], conn.connection_pool.connection_kwargs["port"])
        for conn in pool.sentinel_manager.sentinels
    ] == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
