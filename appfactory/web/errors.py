"""One JSON error envelope for every failure, expected or not."""

from __future__ import annotations

import logging
import math

from flask import Flask, Response, current_app
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError

from appfactory.db.engine import missing_table
from appfactory.resilience.pools import PoolExhausted

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


class ApiError(Exception):
    """A domain failure with its HTTP status, a stable code and a human message.

    `retry_after` (seconds) becomes the Retry-After header: when to try again makes sense; `headers`
    are added as they are (WWW-Authenticate on a 401).
    """

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        **details: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.retry_after = retry_after
        self.headers = headers
        self.details = details


def error_body(code: str, message: str, **details: object) -> bytes:
    """The error envelope, written as every other response body is."""
    error = {"code": code, "message": message, **details}
    return current_app.json.body({"error": error})


def _render(status: int, code: str, message: str, response: Response | None = None, **details) -> Response:
    response = response or Response(status=status)
    response.status_code = status
    response.set_data(error_body(code, message, **details))
    response.content_type = "application/json"
    return response


def error_response(err: ApiError) -> Response:
    """The envelope for `err`, as its handler writes it (for handlers registered elsewhere)."""
    response = _render(err.status, err.code, err.message, **err.details)
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    if err.headers:
        response.headers.update(err.headers)
    return response


def _http_error(err: HTTPException) -> Response:
    # Start from werkzeug's response so Allow (405) and Retry-After (429) survive.
    status = err.code or 500
    if status >= 500 and not isinstance(err, InternalServerError):
        log.warning("HTTP %s: %s", status, err.description)
    message = err.description or "error"
    return _render(status, _CODES.get(status, "error"), message, err.get_response())


def _database_unavailable() -> ApiError:
    return ApiError(
        503, "The database is unavailable; try again shortly.", "database_unavailable", retry_after=2
    )


def _busy(err: PoolExhausted) -> ApiError:
    return ApiError(503, "The service is busy; retry shortly.", "busy", retry_after=1)


def _pool_exhausted(err: PoolExhausted) -> Response:
    log.warning("Refused a request: %s", err)
    return error_response(_busy(err))


def as_api_error(err: BaseException) -> ApiError | None:
    """The answer a failure stands for when it is not a bug: itself (ApiError), or 503 for a database
    that does not answer; None for anything else. The cache shares it with callers waiting on the
    same computation, so they answer at once instead of trying again one after the other."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, (OperationalError, PoolTimeout)):
        return _database_unavailable()
    if isinstance(err, PoolExhausted):
        return _busy(err)
    return None


def _database_error(err: DBAPIError | PoolTimeout) -> Response:
    # An outage, not a bug: one line per request without a traceback keeps the logs readable.
    reason = (str(getattr(err, "orig", None) or err).strip().splitlines() or [""])[0]
    log.warning("Database unavailable: %s: %s", type(err).__name__, reason)
    return error_response(_database_unavailable())


def _schema_not_ready(err: ProgrammingError) -> Response:
    """A table the code reads is not there: the database came up after the service and the schema
    is still being brought to head (appfactory/serving/master.py). A 503, like any database not ready."""
    if not missing_table(err):
        return unexpected_error(err)
    log.warning("Database schema not at head: %s", str(err.orig).strip().splitlines()[0])
    return error_response(
        ApiError(
            503, "The database is not ready yet; try again shortly.", "database_unavailable", retry_after=2
        )
    )


def unexpected_error(err: Exception) -> Response:
    """A bug: logged with its traceback, answered 500 without one."""
    original = getattr(err, "original_exception", None) or err
    if isinstance(original, (OperationalError, PoolTimeout)):
        return _database_error(original)
    log.error("Unhandled error", exc_info=original)
    return _render(500, "internal_error", "The server hit an unexpected error.")


def register_error_handlers(app: Flask) -> None:
    """Route every error to the JSON envelope."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_error)
    app.register_error_handler(PoolTimeout, _database_error)
    app.register_error_handler(ProgrammingError, _schema_not_ready)
    app.register_error_handler(PoolExhausted, _pool_exhausted)
    app.register_error_handler(InternalServerError, unexpected_error)
