"""Errors under /v1 in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the
statuses the official SDKs map to their exceptions. The service's own envelope is rewritten after the
fact, so every error (the hooks' 401 and 429 included) keeps its status and headers."""

from __future__ import annotations

import orjson
from flask import Response

from blueprints.openai_compat import bp

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


@bp.after_request
def openai_error_shape(response: Response) -> Response:
    if response.status_code < 400 or response.mimetype != "application/json":
        return response
    try:
        error = orjson.loads(response.get_data())["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response
    if response.status_code == 422:  # what the SDKs call a BadRequestError
        response.status_code = 400
    status = response.status_code
    shaped = {
        "message": error.get("message", ""),
        "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": error.get("field"),
        "code": error.get("code"),
    }
    response.set_data(orjson.dumps({"error": shaped}) + b"\n")
    return response
