"""Request parsing: JSON bodies and query parameters, with errors that name the field."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from flask import request

from appfactory.config import readable
from appfactory.web.errors import ApiError


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming the offending field."""
    return ApiError(422, f"{field}: {message}", field=field)


def json_body(allowed: Iterable[str] | None = None) -> dict[str, Any]:
    """The request's JSON object; 415, 400 or 422 when it is not one."""
    if not request.is_json:
        raise ApiError(415, "Send the body as JSON with Content-Type: application/json.")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting
        body = None
    if body is None:
        if not request.get_data(cache=True):
            raise ApiError(400, "The request body is empty; send a JSON object.")
        raise ApiError(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        kind = "an array" if isinstance(body, list) else "a single value"
        raise ApiError(422, f"The request body must be a JSON object, not {kind}.")
    if allowed is not None:
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise invalid(unknown[0], "unknown field")
    return body


def text_field(
    body: Mapping[str, Any],
    name: str,
    *,
    max_length: int,
    required: bool = True,
    min_length: int = 1,
    strip: bool = True,
) -> str | None:
    """A string field, length-checked, free of NUL characters."""
    if name not in body or body[name] is None:
        if required:
            raise invalid(name, "is required")
        return None
    value = body[name]
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if strip:
        value = value.strip()
    check_text(name, value)
    if len(value) < min_length:
        raise invalid(
            name, "must not be empty" if min_length == 1 else f"must be at least {min_length} characters"
        )
    if len(value) > max_length:
        raise invalid(name, f"must be at most {max_length} characters")
    return value


def check_text(name: str, value: str) -> None:
    """Reject what no database or log line should hold: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise invalid(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(name, "must be valid Unicode text") from None


def number_field(
    body: Mapping[str, Any],
    name: str,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
    default: Any = None,
) -> Any:
    """A number within bounds; strings of digits are accepted (query strings carry only text)."""
    # `in` first: werkzeug's MultiDict.get raises and catches an exception for a missing key.
    raw = body[name] if name in body else None
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise invalid(name, "must be a number")
    if integer and isinstance(raw, float) and not raw.is_integer():
        raise invalid(name, "must be a whole number")
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError, OverflowError):
        raise invalid(name, "must be a whole number" if integer else "must be a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(name, "must be a finite number")
    if value < minimum or value > maximum:
        raise invalid(name, f"must be between {readable(minimum)} and {readable(maximum)}")
    return value


def pagination(default_limit: int = 20, max_limit: int = 100) -> tuple[int, int]:
    """`limit` (1..max_limit) and `offset` (≥ 0) from the query string."""
    args = request.args
    limit = number_field(args, "limit", minimum=1, maximum=max_limit, integer=True, default=default_limit)
    offset = number_field(args, "offset", minimum=0, maximum=2**31 - 1, integer=True, default=0)
    return limit, offset
