"""`contract`: the SpecTree that checks each view's query, body and answer against its schemas.

A view declares its schemas once, `@contract.validate(query=..., json=..., resp=answers(...))`, and
receives the parsed models as its `query` and `json` arguments. What fails the schemas becomes the
service's 422 envelope naming the field (`_before`); an answer that breaks its own schema is a bug,
logged and answered 500 (`_after`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Request, request
from pydantic import BaseModel, ValidationError
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree

from appfactory.compat import spectree as compat_spectree
from appfactory.contract.schemas import ErrorEnvelope
from appfactory.web.errors import ApiError
from appfactory.web.validation import json_object

Model = TypeVar("Model", bound=BaseModel)

# Every POST, PUT and PATCH of this API takes a JSON object.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PLAIN = {"extra_forbidden": "unknown {where}", "missing": "is required"}


def invalid_request(err: ValidationError) -> ApiError:
    """The 422 for a request that fails its schema: the first fault names the field, all are listed."""
    faults = []
    for error in err.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        where = "query parameter" if field in request.args else "field"
        faults.append(
            {"field": field, "message": _PLAIN.get(error["type"], error["msg"]).format(where=where)}
        )
    first = faults[0]
    return ApiError(422, f"{first['field']}: {first['message']}", field=first["field"], errors=faults)


def _before(
    req: Request, _response: Any, error: ValidationError | None, _instance: Any, _adapter: Any
) -> None:
    if req.method in _BODY_METHODS:
        json_object()  # 415, 400 or 422 for a body that is not a JSON object, before what it holds
    if error is not None:
        raise invalid_request(error)


class AnswerBreaksContract(RuntimeError):
    """A view answered something its own schema does not describe."""


def _after(
    _req: Request, _response: Any, error: ValidationError | None, _instance: Any, _adapter: Any
) -> None:
    if error is not None:
        raise AnswerBreaksContract(str(error)) from error


contract = SpecTree(
    "flask",
    backend=compat_spectree.PLUGIN,
    title="aigen",
    mode="strict",  # the document holds the routes declared here; tests/contract checks none is missing
    before=_before,
    after=_after,
    validation_error_model=ErrorEnvelope,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[
        SecurityScheme(
            name="bearer",
            data=SecuritySchemeData(
                type="http", scheme="bearer", description="An API key: `Authorization: Bearer aig_…`"
            ),
        )
    ],
)


def answers(status: int = 200, model: type[BaseModel] | None = None, *errors: int) -> Response:
    """A view's success answer and the errors particular to it (those every route may give, from the
    hooks, are added to the document by `contract.document`)."""
    return Response(**{f"HTTP_{status}": model}, **{f"HTTP_{code}": ErrorEnvelope for code in errors})


def query_of(model: type[Model]) -> Model:
    """The request's query string parsed by `model`, as `contract.validate` parses it, for code that
    runs before the view (the cache's early answer); a 422 when it does not fit."""
    values = {name: (found[0] if len(found) == 1 else found) for name, found in request.args.lists()}
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise invalid_request(err) from None
