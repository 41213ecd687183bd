"""/openapi.json: the document SpecTree writes from the views' schemas, completed with what the
request hooks add to every answer: the headers of every response, the key each route takes, the
errors any route may give, and the limits read from the configuration."""

from __future__ import annotations

import ast
import copy
import inspect
import re
import sys
import textwrap
from typing import Any

from flask import Flask
from pydantic import BaseModel

from appfactory.contract.validation import contract
from appfactory.web.routing import MAX_ID, REQUEST_LINE_BYTES

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
_STRING, _INTEGER = {"type": "string"}, {"type": "integer"}
_REASONS = {
    400: "Malformed request (or an API key in the URL).",
    401: "Missing, unknown, expired or revoked API key.",
    403: "The key may not change what another user owns.",
    404: "No such record.",
    409: "The name or email is taken.",
    413: "The body is larger than MAX_CONTENT_LENGTH.",
    415: "The body is not JSON.",
    422: "A field is missing or wrong; `error.field` names it.",
    429: "A rate limit or the failed-authentication budget is spent; see Retry-After.",
    500: "A bug; logged with its request id.",
    502: "The model server failed.",
    503: "The database (or the model server's guard) is unavailable; see Retry-After.",
    504: "The model server timed out.",
}


def _header(description: str, schema: dict, required: bool = False) -> dict[str, Any]:
    return {"description": description, "schema": schema, "required": required}


# §5 of the product specification: on every response, on every /api response, on some.
_EVERY = {
    "X-Request-ID": _header("The request's id, also in its log lines.", _STRING, required=True),
    "X-Process-Time": _header("Server time for the request, e.g. `12.34ms`.", _STRING, required=True),
    "X-Content-Type-Options": _header("Always `nosniff`.", _STRING, required=True),
    "Server-Timing": _header("Time spent in the cache, the database and the model.", _STRING),
}
_LIMITED = {
    "X-RateLimit-Limit": _header("Requests allowed in the window.", _INTEGER),
    "X-RateLimit-Remaining": _header("Requests left in the window.", _INTEGER),
    "X-RateLimit-Reset": _header("When the window resets (Unix time, seconds).", _INTEGER),
    "RateLimit-Policy": _header("The budget's name, size and window (IETF draft).", _STRING),
    "RateLimit": _header("The budget's remaining requests and reset (IETF draft).", _STRING),
}
_CACHED = {"X-Cache": _header("HIT, MISS, STALE or BYPASS.", {"enum": ["HIT", "MISS", "STALE", "BYPASS"]})}
_RETRY = {"Retry-After": _header("Seconds to wait before trying again.", _INTEGER)}
_CHALLENGE = {"WWW-Authenticate": _header('`Bearer realm="aigen"`.', _STRING, required=True)}
_LOCATION = {"Location": _header("The new record's URL.", _STRING, required=True)}

# The Swagger UI pages (flask-swagger-ui's blueprint): routes of the service, so described here too.
_PAGES = {
    "/docs/": {
        "get": {
            "summary": "Swagger UI",
            "description": "The interactive documentation page, served with its assets (no internet needed).",
            "operationId": "docs_page",
            "tags": ["contract"],
            "parameters": [],
            "responses": {"200": {"description": "OK"}},
        }
    },
    "/docs/{path}": {
        "get": {
            "summary": "Swagger UI assets",
            "description": "The page's scripts, styles and icons.",
            "operationId": "docs_asset",
            "tags": ["contract"],
            "parameters": [
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "schema": _STRING,
                    "example": "swagger-ui.css",
                }
            ],
            "responses": {
                "200": {"description": "The asset"},
                "404": {"description": "No such asset.", "content": _ERROR},
            },
        }
    },
}
_NOT_JSON = {"/metrics": "text/plain", "/docs/": "text/html"}

_HEADERS = {**_EVERY, **_LIMITED, **_CACHED, **_RETRY, **_CHALLENGE, **_LOCATION}

# Where the service's schemas are defined: their class docstrings are the document's descriptions.
_OWN_PACKAGES = ("appfactory.", "blueprints.")

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def openapi_document(app: Flask) -> dict[str, Any]:
    """The whole document for `app` (its configuration and its routes' identity marks)."""
    doc = copy.deepcopy(contract.spec)
    for operations in doc["paths"].values():
        for operation in operations.values():
            del operation["operationId"]  # SpecTree's, made of the path: the endpoint's name reads better
    doc["info"].update(version=app.config["VERSION"], description=_DESCRIPTION)
    doc["paths"].update(_PAGES)
    for path, content_type in _NOT_JSON.items():
        doc["paths"][path]["get"]["responses"]["200"]["content"] = {content_type: {"schema": _STRING}}
    endpoints = {
        (_CONVERTER.sub(r"{\1}", rule.rule), method): rule.endpoint
        for rule in app.url_map.iter_rules()
        for method in rule.methods
    }
    needs_key = app.extensions["identity_required"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            endpoint = endpoints[path, method.upper()]
            operation.setdefault("operationId", endpoint)  # the pages' own, as one endpoint serves both
            _describe(operation, app.view_functions[endpoint])
            _complete(path, method, operation, needs_key.get(endpoint, False))
            _add_event_stream(operation, app.view_functions[endpoint])
    doc["components"]["headers"] = _HEADERS
    _describe_schemas(doc["components"]["schemas"])
    _apply_limits(doc["components"]["schemas"], app)
    return doc


def _docstring(thing: Any) -> str | None:
    """A function's or class's own docstring; under -OO (no docstrings in memory) read from its source."""
    if thing.__doc__ is not None:
        return inspect.cleandoc(thing.__doc__)
    try:
        return ast.get_docstring(ast.parse(textwrap.dedent(inspect.getsource(thing))).body[0])
    except (OSError, TypeError, SyntaxError):
        return None


def _describe_schemas(schemas: dict[str, Any]) -> None:
    """Under -OO, each schema of the service's own models described by the model's docstring, as
    pydantic would have described it."""
    if sys.flags.optimize < 2:
        return
    models, own = [BaseModel], {}
    while models:
        for model in models.pop().__subclasses__():
            models.append(model)
            if model.__module__.startswith(_OWN_PACKAGES):
                own.setdefault(model.__name__, set()).add(model)  # schemas are named after models
    for name, schema in schemas.items():
        if "description" not in schema and len(own.get(name, ())) == 1:
            if text := _docstring(next(iter(own[name]))):
                schema["description"] = text


def _describe(operation: dict[str, Any], view: Any) -> None:
    """Summary and description from the view's docstring, as SpecTree takes them."""
    text = _docstring(inspect.unwrap(view))
    if text:
        summary, _, description = text.partition("\n\n")
        operation["summary"], operation["description"] = summary.replace("\n", " "), description


EVENT_STREAM = "streams_events"  # a view's mark: with `stream: true` it answers server-sent events


def streams_events(description: str) -> Any:
    """Mark a view whose 200 may also be `text/event-stream` (its events as `description` says), so
    the document says so."""

    def mark(view: Any) -> Any:
        setattr(view, EVENT_STREAM, description)
        return view

    return mark


def _add_event_stream(operation: dict[str, Any], view: Any) -> None:
    if description := getattr(inspect.unwrap(view), EVENT_STREAM, None):
        events = {  # each server-sent event: its `data` a JSON object
            "type": "object",
            "properties": {"data": {"type": "string"}},
            "required": ["data"],
            "description": description,
        }
        operation["responses"]["200"].setdefault("content", {})["text/event-stream"] = {"schema": events}


def _complete(path: str, method: str, operation: dict[str, Any], needs_key: bool) -> None:
    for parameter in operation["parameters"]:
        if parameter["in"] == "path" and parameter["schema"] is None:  # the `id` converter
            parameter["schema"] = dict(_ID)
    api = path.startswith(("/api/", "/v1/"))  # the native API and the OpenAI-compatible face
    responses = operation["responses"]
    if api:
        operation["security"] = [{"bearer": []}] if needs_key else [{"bearer": []}, {}]
        shared = [400, 401, 422, 429, 500, 503]
        if "requestBody" in operation:
            shared += [413, 415]
        for status in shared:
            responses.setdefault(str(status), {"description": _REASONS[status], "content": _ERROR})
    else:
        operation["security"] = []
    for status, response in responses.items():
        code = int(status)
        if code >= 400 and response.get("description") in (None, "", "Unprocessable Content"):
            response["description"] = _REASONS.get(code, response.get("description", ""))
        headers = dict(_EVERY)
        if api:
            headers.update(_LIMITED)
        if api and method == "get" and code < 400:
            headers.update(_CACHED)
        if code in (429, 503):
            headers.update(_RETRY)
        if code == 401:
            headers.update(_CHALLENGE)
        if code == 201:
            headers.update(_LOCATION)
        response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}


def _apply_limits(schemas: dict[str, Any], app: Flask) -> None:
    """What the configuration bounds: the prompt's length and the models offered."""
    offered = sorted(app.extensions["ai_models"])
    for name in ("GenerateQuery", "GenerateBody"):
        properties = schemas[name]["properties"]
        _string_of(properties["prompt"])["maxLength"] = app.config["MAX_PROMPT_CHARS"]
        _string_of(properties["model"])["enum"] = offered
    if "ChatRequest" in schemas:  # /v1: the same models
        _string_of(schemas["ChatRequest"]["properties"]["model"])["enum"] = offered


def _string_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The string branch of an optional field's schema (`anyOf: [string, null]`), or the schema."""
    for branch in schema.get("anyOf", ()):
        if branch.get("type") == "string":
            return branch
    return schema


_DESCRIPTION = f"""AI text generation, prompt templates and users.

Every answer is JSON; every error is `{{"error": {{"code", "message", "field"?}}}}`.

**Keys.** `POST /api/v1/users` returns a user's first API key once. Send it as
`Authorization: Bearer aig_…`. Writes need one; generation needs one unless the operator allows
anonymous callers. A key in the URL is refused (400).

**Long prompts.** The request line holds at most {REQUEST_LINE_BYTES:,} bytes: a GET prompt fits when it
is that long once URL-encoded (a CJK character takes 9 bytes). Longer prompts go in the body of
`POST /api/v1/ai/generate`, up to the prompt limit shown on `prompt`.
"""
