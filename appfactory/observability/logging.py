"""Logging: JSON lines on stdout for the app and gunicorn, with the request id on each."""

from __future__ import annotations

import json
import logging
import logging.config
import math
import os
import re
import select
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

import orjson
from flask import g, has_request_context
from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from appfactory.observability.stdstreams import LoggingStream

# Output keys every line has; a structured field with one of these names is written as `field_<name>`.
CORE_KEYS = frozenset({"timestamp", "level", "logger", "message", "request_id"})
_MAX_DEPTH = 8


class RequestIdFilter(logging.Filter):
    """Stamp every record with the id of the request being served, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            trace = g.get("trace") if has_request_context() else None
            record.request_id = trace.request_id if trace is not None else None
        return True


def _fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    return record.__dict__.get("_fields") or {}


def _output_key(key: Any) -> str:
    key = str(key)
    return f"field_{key}" if key in CORE_KEYS else key


def _readable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: odd keys become strings, NaN and deep or cyclic values their repr."""
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return _repr(value)
    if isinstance(value, Mapping):
        return {str(k): _readable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_readable(v, depth + 1) for v in value]
    return _repr(value)


def _repr(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


class _UtcTime:
    """ISO 8601 UTC timestamps with milliseconds, e.g. 2026-11-25T19:48:29.123Z."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # strftime once per second, not once per line: the access log writes many lines a second.
        whole = int(record.created)
        second, text = self._second
        if second != whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, text)
        return f"{text}.{int(record.msecs):03d}Z"


# One encoder for every line, built once; NaN is not JSON, so it is refused and the fallback turns it
# into text.
_ENCODER = JsonEncoder(allow_nan=False)


# Values orjson writes as the json module does (floats too, when finite), text as UTF-8 not \u escapes.
_FLAT = frozenset({str, int, bool, type(None)})


# What orjson writes raw (valid JSON) that the json module escapes: DEL, the C1 controls (NEL among
# them) and U+2028/U+2029, at which str.splitlines() and some log readers break a line.
_RAW_BREAKS = re.compile("[\x7f-\x9f\u2028\u2029]")


def _escape_raw_breaks(line: str) -> str:
    if line.isascii() and "\x7f" not in line:  # nearly every line: two scans in C, no regex
        return line
    return _RAW_BREAKS.sub(lambda found: f"\\u{ord(found.group()):04x}", line)


def _encode(data: Any, **_library_options: Any) -> str:
    # A flat line (every request line) through orjson, ~10× faster; anything nested, NaN (orjson would
    # write null, the fallback below writes "nan") and what orjson refuses through the json module.
    for value in data.values():
        kind = type(value)
        if kind not in _FLAT and (kind is not float or not math.isfinite(value)):
            return _ENCODER.encode(data)
    try:
        return _escape_raw_breaks(orjson.dumps(data).decode())
    except TypeError:  # orjson.JSONEncodeError: integers beyond 64 bits, lone surrogates
        return _ENCODER.encode(data)


class JsonFormatter(_UtcTime, _LibraryJsonFormatter):
    """python-json-logger's formatter: UTC timestamps, structured fields, never an unserializable line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json_serializer", _encode)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_data, record, message_dict)
        for key, value in _fields_of(record).items():
            log_data[_output_key(key)] = value

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        try:
            return super().jsonify_log_record(log_data)
        except (TypeError, ValueError, RecursionError):
            return super().jsonify_log_record(_readable(log_data))


# Control characters (C0, DEL, C1: CR, VT, NEL, ESC...) and Unicode's line and paragraph separators: raw,
# they would end a text line early or rewrite a terminal, so a request's path could forge log lines.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """`text` on one line: control characters and line separators as \\r, \\x1b, \\u2028."""
    if text.isascii() and text.isprintable():  # nearly every line: one scan in C, no regex
        return text
    return _CONTROLS.sub(_escape_control, text)


def _continuation(text: str) -> str:
    """A traceback below a text line: each of its lines escaped and indented, so none of them (an
    exception's message included) can pass for a line of its own."""
    return "\n".join("  " + escape_controls(line) for line in text.split("\n"))


class TextFormatter(_UtcTime, logging.Formatter):
    """One line for humans: the message followed by its fields as key=value; a traceback below it,
    indented. Nothing a client sends can start a line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _continuation(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _continuation(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        if record.__dict__.get("request_id") is None:
            record.request_id = "-"
        line = super().format(record)
        fields = dict(_fields_of(record))
        if not fields:
            return line
        error = fields.get("error")
        trace = ""
        if isinstance(error, dict) and "traceback" in error:
            fields["error"] = f"{error.get('type')}: {error.get('message')}"
            trace = "\n" + _continuation(str(error["traceback"]).rstrip())
        pairs = " ".join(f"{_output_key(k)}={_text_value(v)}" for k, v in fields.items())
        head, newline, rest = line.partition("\n")  # keep exc_info's traceback below the fields
        return f"{head} {pairs}{newline}{rest}{trace}"


def _text_value(value: Any) -> str:
    if isinstance(value, str) and value and " " not in value and value.isprintable():
        return value
    try:  # quoted, with every control and non-ASCII character as a JSON escape (DEL aside)
        return escape_controls(json.dumps(_readable(value)))
    except (TypeError, ValueError):
        return escape_controls(_repr(value))


class StdoutHandler(logging.StreamHandler):
    """A handler on the process's real stdout, also when sys.stdout is routed into logging.

    A line of up to PIPE_BUF bytes goes out in one write(2) on the file descriptor, which the kernel
    keeps whole among concurrent writers: no lock is held while the call waits, so the request threads
    do not queue behind each other's log lines. Longer lines (tracebacks) take the handler's lock.
    """

    def __init__(self) -> None:
        stream = sys.stdout
        super().__init__(stream.original if isinstance(stream, LoggingStream) else stream)
        try:
            self._fd: int | None = self.stream.fileno()
            self.stream.flush()  # what was buffered goes out before the first line written past it
        except (AttributeError, OSError, ValueError):  # a stream without a descriptor (tests' capture)
            self._fd = None

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        if self._fd is None:
            return super().handle(record)
        checked = self.filter(record)
        if checked:
            self.emit(checked if isinstance(checked, logging.LogRecord) else record)
        return checked

    def emit(self, record: logging.LogRecord) -> None:
        if self._fd is None:
            return super().emit(record)
        try:
            line = (self.format(record) + self.terminator).encode("utf-8", "backslashreplace")
            if len(line) <= select.PIPE_BUF:
                os.write(self._fd, line)
                return None
            with self.lock:  # type: ignore[union-attr]
                while line:
                    line = line[os.write(self._fd, line) :]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
        return None


def logging_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A dictConfig for the service; gunicorn.conf.py hands the same dict to gunicorn."""
    formatters = {
        "json": {
            "()": JsonFormatter,
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "logger"},
        },
        "text": {
            "()": TextFormatter,
            "format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s",
        },
    }
    handler = {"()": StdoutHandler, "formatter": fmt, "filters": ["request_id"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {fmt: formatters[fmt]},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
            # alembic names each of its plugins at INFO on every start; its "Running upgrade" lines stay.
            "alembic.runtime.plugins": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Apply the service's logging configuration to this process."""
    # No output format shows the thread or process a record came from: skip looking them up per record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.config.dictConfig(logging_config(level, fmt))


def emit(logger: logging.Logger, level: int, message: str, fields: Mapping[str, Any], **known: Any) -> None:
    """Log `message` with structured fields; skips the caller lookup no output line uses.

    `known` sets record attributes the caller already has (`request_id=`), so filters need not look.
    """
    if logger.isEnabledFor(level):
        extra = {"_fields": fields, **known}
        record = logger.makeRecord(logger.name, level, "", 0, message, (), None, extra=extra)
        logger.handle(record)


def error_fields(error: BaseException) -> dict[str, str]:
    """The type, message and traceback of an exception, as log fields."""
    return {
        "type": type(error).__name__,
        "message": _repr(error),
        "traceback": "".join(traceback.format_exception(error)),
    }


class ApiLogger:
    """`api_logger.info("User action", user_id=123)`: keyword arguments become JSON fields."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def _log(self, level: int, message: str, error: Any, fields: dict[str, Any]) -> None:
        try:
            if error is not None:
                fields["error"] = error_fields(error) if isinstance(error, BaseException) else error
            emit(self.logger, level, message, fields)
        except Exception:  # a log line is never worth a failed request
            pass

    def debug(self, message: str, /, *, error: Any = None, **fields: Any) -> None:
        self._log(logging.DEBUG, message, error, fields)

    def info(self, message: str, /, *, error: Any = None, **fields: Any) -> None:
        self._log(logging.INFO, message, error, fields)

    def warning(self, message: str, /, *, error: Any = None, **fields: Any) -> None:
        self._log(logging.WARNING, message, error, fields)

    def error(self, message: str, /, *, error: Any = None, **fields: Any) -> None:
        self._log(logging.ERROR, message, error, fields)

    def critical(self, message: str, /, *, error: Any = None, **fields: Any) -> None:
        self._log(logging.CRITICAL, message, error, fields)

    def exception(self, message: str, /, **fields: Any) -> None:
        """ERROR with the exception being handled."""
        self._log(logging.ERROR, message, sys.exc_info()[1], fields)


api_logger = ApiLogger("appfactory.api")
