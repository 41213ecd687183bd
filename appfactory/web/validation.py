"""What every JSON body must be before its schema reads it, and the 422 for a field found wrong later.

The fields themselves are described and checked by each view's schemas (appfactory/contract)."""

from __future__ import annotations

from typing import Any

from flask import request

from appfactory.web.errors import ApiError


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming the offending field."""
    return ApiError(422, f"{field}: {message}", field=field)


def json_object() -> dict[str, Any]:
    """The request's JSON object; 415, 400 or 422 when it is not one."""
    if not request.is_json:
        raise ApiError(415, "Send the body as JSON with Content-Type: application/json.")
    body = request.get_json(silent=True)
    if body is None:  # invalid JSON, no body, or a JSON null
        data = request.get_data(cache=True)
        if not data:
            raise ApiError(400, "The request body is empty; send a JSON object.")
        if data.strip() == b"null":
            raise ApiError(422, "The request body must be a JSON object, not null.")
        raise ApiError(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        kind = "an array" if isinstance(body, list) else "a single value"
        raise ApiError(422, f"The request body must be a JSON object, not {kind}.")
    return body
