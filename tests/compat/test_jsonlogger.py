"""compat.jsonlogger: a request line through the fast path is the line add_fields would write."""

from __future__ import annotations

import json
import logging

from appfactory.compat import jsonlogger as compat_jsonlogger
from appfactory.observability.logging import JsonFormatter, emit, logging_config

FORMAT = logging_config("INFO", "json")["formatters"]["json"]


def _formatter() -> JsonFormatter:
    return JsonFormatter(**{key: value for key, value in FORMAT.items() if key != "()"})


def _request_record() -> logging.LogRecord:
    logger = logging.getLogger("tests.compat.jsonlogger")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        fields = {"method": "GET", "path": "/api/v1/templates/1", "status": 404, "cache": None}
        emit(logger, logging.INFO, "request", fields, request_id="r-1")
    finally:
        logger.removeHandler(handler)
    [record] = records
    return record


def test_the_fast_line_equals_the_public_line(monkeypatch):
    fast = _formatter()
    monkeypatch.setattr(compat_jsonlogger, "FAST", False)
    public = _formatter()
    assert (fast._plain, public._plain) == (True, False)
    record = _request_record()
    line = json.loads(fast.format(record))
    assert line == json.loads(public.format(record))
    assert (line["request_id"], line["status"], line["message"]) == ("r-1", 404, "request")
