"""Every compat module takes its private way only on the version it was tested against."""

from __future__ import annotations

import logging
from importlib.metadata import version

import pytest

from appfactory import compat
from appfactory.compat import (
    cachelib,
    flask_limiter,
    limits,
    prometheus_client,
    redis,
    spectree,
    werkzeug,
)

MODULES = {
    "cachelib": cachelib,
    "Flask-Limiter": flask_limiter,
    "limits": limits,
    "prometheus_client": prometheus_client,
    "redis": redis,
    "spectree": spectree,
    "werkzeug": werkzeug,
}


@pytest.mark.parametrize("library", sorted(MODULES))
def test_the_pinned_version_is_the_tested_one_and_takes_the_private_way(library):
    module = MODULES[library]
    assert version(library) == module.TESTED, (
        f"requirements.txt pins another {library}: re-test its private way"
    )
    assert module.PRIVATE is True


def test_another_version_takes_the_public_way_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="appfactory.compat"):
        assert compat.private_way("werkzeug", "0.0.1") is False
    [record] = caplog.records
    assert "werkzeug" in record.getMessage() and "0.0.1" in record.getMessage()
    assert "public way" in record.getMessage()


def test_the_environment_can_force_the_public_way(monkeypatch, caplog):
    monkeypatch.setenv(compat.PUBLIC_ENV, "redis, limits")
    with caplog.at_level(logging.WARNING, logger="appfactory.compat"):
        assert compat.private_way("redis", version("redis")) is False
        assert compat.private_way("werkzeug", version("werkzeug")) is True
    assert len(caplog.records) == 1
    monkeypatch.setenv(compat.PUBLIC_ENV, "all")
    assert compat.private_way("werkzeug", version("werkzeug")) is False
