"""Log lines: JSON objects with the request's fields, api_logger's keyword form, and the text format."""

from __future__ import annotations

import json
import logging
import re
import sys
import urllib.parse
from datetime import datetime

import pytest

from appfactory import create_app
from appfactory.observability import logging as applog
from appfactory.observability.logging import api_logger
from appfactory.observability.stdstreams import LoggingStream
from tests.conftest import base_overrides

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def make_app(capsys, tmp_path):
    """Build an app whose logs land in capsys; logging goes back to the real stdout afterwards."""

    def make(**overrides):
        settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", "LOG_LEVEL": "INFO", **overrides}
        return create_app(base_overrides(**settings))

    yield make
    _release_capture()


def _release_capture() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, applog.StdoutHandler):
            handler.stream = sys.__stdout__  # capsys closes its stream after the test


def json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_one_json_request_line_with_its_fields(make_app, capsys):
    client = make_app().test_client()
    capsys.readouterr()
    response = client.get("/health/live?x=1", headers={"X-Request-ID": "abc-123"})

    lines = json_lines(capsys)
    requests = [line for line in lines if line["logger"] == "appfactory.access"]
    assert len(requests) == 1
    line = requests[0]
    assert line["message"] == "request"
    assert line["level"] == "INFO"
    assert line["request_id"] == "abc-123" == response.headers["X-Request-ID"]
    assert ISO_UTC.fullmatch(line["timestamp"])
    assert datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert line["method"] == "GET"
    assert line["path"] == "/health/live"  # the query string stays out of the logs
    assert line["status"] == 200
    assert line["remote_addr"] == "127.0.0.1"
    assert line["cache"] is None
    assert 0 <= line["duration_ms"] <= float(response.headers["X-Process-Time"].removesuffix("ms"))


def test_errors_and_unknown_paths_get_their_line(make_app, capsys):
    client = make_app().test_client()
    capsys.readouterr()
    client.get("/no/such/path")
    client.delete("/health/live")
    statuses = [line["status"] for line in json_lines(capsys) if line["logger"] == "appfactory.access"]
    assert statuses == [404, 405]


def test_cache_field_is_the_x_cache_header(make_app, capsys):
    app = make_app()

    @app.get("/cached-probe")
    def cached_probe():
        return {"ok": True}, 200, {"X-Cache": "HIT"}

    app.test_client().get("/cached-probe")
    [line] = [line for line in json_lines(capsys) if line["logger"] == "appfactory.access"]
    assert line["cache"] == "HIT"


def test_request_id_on_every_line_of_the_request(make_app, capsys):
    app = make_app()

    @app.get("/chatty")
    def chatty():
        logging.getLogger("appfactory.test").warning("inside the view")
        api_logger.info("User action", user_id=7)
        return {}

    app.test_client().get("/chatty", headers={"X-Request-ID": "req-7"})
    lines = json_lines(capsys)
    assert len(lines) == 3
    assert {line["request_id"] for line in lines} == {"req-7"}


def test_slow_request_warning(make_app, capsys):
    client = make_app(SLOW_REQUEST_MS=0).test_client()
    capsys.readouterr()
    client.get("/health/live", headers={"X-Request-ID": "slow-1"})
    lines = json_lines(capsys)
    [warning] = [line for line in lines if line["message"] == "Slow request detected"]
    assert warning["level"] == "WARNING"
    assert warning["request_id"] == "slow-1"
    assert warning["threshold_ms"] == 0
    for field in ("method", "path", "status", "duration_ms", "remote_addr", "cache"):
        assert field in warning


def test_no_slow_warning_under_the_default_threshold(make_app, capsys):
    client = make_app().test_client()
    for _ in range(5):
        client.get("/health/live")
    assert not [line for line in json_lines(capsys) if line["message"] == "Slow request detected"]


def test_log_level_warning_drops_request_lines(make_app, capsys):
    client = make_app(LOG_LEVEL="WARNING").test_client()
    capsys.readouterr()
    client.get("/health/live")
    assert json_lines(capsys) == []


def test_api_logger_keyword_fields(make_app, capsys):
    make_app()
    api_logger.info("User action", user_id=123, action="create", name="Ada", message="shadow")
    [line] = json_lines(capsys)
    assert line["message"] == "User action"
    assert line["logger"] == "appfactory.api"
    assert line["user_id"] == 123
    assert line["action"] == "create"
    assert line["name"] == "Ada"
    assert line["field_message"] == "shadow"  # a field never overwrites the line's own keys
    assert line["request_id"] is None


def test_api_logger_error_fields(make_app, capsys):
    make_app()
    try:
        {}["missing"]
    except KeyError as exc:
        api_logger.error("Operation failed", error=exc, context={"id": 5, "tags": ["a"]})
    [line] = json_lines(capsys)
    assert line["level"] == "ERROR"
    assert line["context"] == {"id": 5, "tags": ["a"]}
    assert line["error"]["type"] == "KeyError"
    assert line["error"]["message"] == "'missing'"
    assert line["error"]["traceback"].startswith("Traceback")
    assert "test_logging.py" in line["error"]["traceback"]


def test_unserializable_values_are_made_readable(make_app, capsys):
    make_app()

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    cyclic: list = []
    cyclic.append(cyclic)
    api_logger.warning(
        "odd values",
        thing=Opaque(),
        number=float("nan"),
        keys={(1, 2): "tuple key"},
        items={3},
        raw=b"\xff",
        cyclic=cyclic,
    )
    out = capsys.readouterr().out
    line = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert line["thing"] == "<Opaque thing>"
    assert line["number"] == "nan"
    assert line["keys"] == {"(1, 2)": "tuple key"}
    assert line["items"] == [3]
    assert isinstance(line["raw"], str)
    assert "[...]" in json.dumps(line["cyclic"])


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (2**70, 2**70),
        ("Zoë 日本", "Zoë 日本"),
        ("lone \ud800", "lone \ud800"),
        (0.1, 0.1),
    ],
)
def test_flat_lines_write_every_value_as_the_json_module_would(make_app, capsys, value, written):
    make_app()
    api_logger.info("flat", value=value, count=3, ok=True, missing=None)
    [line] = json_lines(capsys)
    assert line["value"] == written
    assert (line["count"], line["ok"], line["missing"]) == (3, True, None)


def test_a_failing_log_call_never_fails_the_request(make_app, capsys):
    app = make_app()

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    @app.get("/log-oddly")
    def log_oddly():
        api_logger.info("odd", value=Unprintable())
        api_logger.info("bad %s %s", error=object())
        return {"ok": True}

    response = app.test_client().get("/log-oddly")
    assert response.status_code == 200
    odd, bad, request = json_lines(capsys)
    assert odd["message"] == "odd" and "value" in odd
    assert bad["message"] == "bad %s %s" and isinstance(bad["error"], str)
    assert request["status"] == 200


def test_metrics_failure_never_fails_the_request(make_app, capsys, monkeypatch):
    app = make_app()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr("appfactory.observability.metrics.observe_request", broken)
    response = app.test_client().get("/health/live")
    assert response.status_code == 200
    assert "X-Process-Time" in response.headers
    assert "Could not record the request" in capsys.readouterr().out


def test_text_format_for_humans(make_app, capsys):
    client = make_app(LOG_FORMAT="text").test_client()
    capsys.readouterr()
    client.get("/health/live", headers={"X-Request-ID": "txt-1"})
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        api_logger.error("Operation failed", error=exc, user_id=3)
    out = capsys.readouterr().out
    request_line, error_line, *traceback_lines = out.splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(request_line)
    assert ISO_UTC.match(request_line)
    assert "INFO" in request_line and "[txt-1]" in request_line
    assert "method=GET path=/health/live status=200" in request_line
    assert "Operation failed user_id=3" in error_line and "ValueError: bad value" in error_line
    assert traceback_lines[0].startswith("  Traceback")  # indented: no traceback line passes for a record


# What a client can put in a logged value (a percent-encoded path, a header): every character that ends a
# line for str.splitlines() or a log reader, or rewrites a terminal.
BREAKERS = "\r\x0b\x0c\x1b[2J\x1c\x85\u2028\u2029\x7f\x00"
FORGED = "\n2026-01-01T00:00:00.000Z INFO    appfactory.access [-] request method=GET path=/forged"


def _breaking_path(app) -> str:
    @app.get("/<path:anything>")
    def echo(anything):
        return {"ok": True}

    path = "/a" + BREAKERS + "b"
    response = app.test_client().get(urllib.parse.quote(path))  # as a client sends it: %0D, %E2%80%A8
    assert response.status_code == 200 and response.request.path == path
    return path


def test_text_lines_escape_control_characters_and_line_separators(make_app, capsys):
    app = make_app(LOG_FORMAT="text")
    path = _breaking_path(app)
    api_logger.warning("client said " + BREAKERS + FORGED, value=BREAKERS)
    try:
        raise ValueError("bad" + FORGED)
    except ValueError as exc:
        api_logger.error("Operation failed", error=exc)
    out = capsys.readouterr().out

    request_line, said_line, error_line, *traceback_lines = out.splitlines()  # every separator splits
    assert len(out.split("\n")) == len(out.splitlines()) + 1  # nothing but \n ended a line
    assert f"path={json.dumps(path)} " in request_line  # quoted with JSON escapes: \r, \u001b, \u2028
    assert json.loads(request_line.split("path=")[1].split(" status=")[0]) == path
    assert "client said \\r\\x0b\\x0c\\x1b[2J\\x1c\\x85\\u2028\\u2029\\x7f\\x00\\n2026" in said_line
    assert f"value={json.dumps(BREAKERS)}" in said_line
    assert "Operation failed" in error_line
    assert traceback_lines and all(line.startswith("  ") for line in traceback_lines)
    assert not any(ISO_UTC.match(line) for line in traceback_lines)  # the forged record stays indented


def test_json_lines_escape_line_separators_too(make_app, capsys):
    app = make_app(LOG_FORMAT="json")
    path = _breaking_path(app)
    api_logger.info("client said " + BREAKERS + FORGED)
    out = capsys.readouterr().out

    assert all(line.isascii() and line.isprintable() for line in out.split("\n"))  # all escaped
    assert out.count("\n") == len(out.splitlines()) == 2
    request, said = [json.loads(line) for line in out.splitlines()]
    assert request["path"] == path
    assert said["message"] == "client said " + BREAKERS + FORGED


def test_printed_lines_become_log_records(capsys):
    applog.configure_logging("INFO", "json")
    original = sys.stderr
    stream = LoggingStream(logging.getLogger("stderr"), logging.ERROR, original)
    try:
        print("first line\nsecond", file=stream, end="")
        stream.flush()
        lines = json_lines(capsys)
    finally:
        _release_capture()
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("stderr", "ERROR", "first line"),
        ("stderr", "ERROR", "second"),
    ]


def test_lines_from_many_threads_reach_a_pipe_whole(monkeypatch):
    import os
    import threading

    read_end, write_end = os.pipe()
    writer = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", writer)
    handler = applog.StdoutHandler()
    assert handler._fd == write_end  # the descriptor path, not the stream's
    handler.setFormatter(applog.JsonFormatter("%(message)s"))
    received = bytearray()
    reader = threading.Thread(
        target=lambda: [received.extend(chunk) for chunk in iter(lambda: os.read(read_end, 65536), b"")]
    )
    reader.start()

    def log(n: int) -> None:
        for i in range(200):
            handler.handle(logging.makeLogRecord({"msg": f"thread {n} line {i} " + "x" * 300}))

    threads = [threading.Thread(target=log, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.handle(logging.makeLogRecord({"msg": "long " + "y" * 20_000}))  # past PIPE_BUF: under the lock
    writer.close()
    reader.join(timeout=10)
    lines = received.decode().splitlines()
    messages = [json.loads(line)["message"] for line in lines]  # every line whole, nothing interleaved
    assert len(messages) == 8 * 200 + 1
    assert messages[-1] == "long " + "y" * 20_000


def test_the_spec_import_path_is_the_same_logger(make_app, capsys):
    from appfactory.logging import api_logger as promised

    assert promised is api_logger
    make_app()
    promised.info("User action", user_id=123, action="create")
    [line] = json_lines(capsys)
    assert (line["message"], line["user_id"], line["action"]) == ("User action", 123, "create")
