"""Logging: JSON lines on stdout for the app and gunicorn, with the request id on each."""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from flask import g, has_request_context


class RequestIdFilter(logging.Filter):
    """Stamp every record with the id of the request being served, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


def logging_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A dictConfig for the service; gunicorn.conf.py hands the same dict to gunicorn."""
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        },
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"},
    }
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
        "formatter": fmt,
        "filters": ["request_id"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": formatters["json"], "text": formatters["text"]},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
        },
    }


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Apply the service's logging configuration to this process."""
    logging.config.dictConfig(logging_config(level, fmt))
