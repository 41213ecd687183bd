"""The API's contract for its clients: /openapi.json, and /docs, Swagger UI served from the assets its
package bundles (it works with no internet). Never rate limited, like the other operator pages."""

from __future__ import annotations

from flask import Blueprint, current_app
from flask_swagger_ui import get_swaggerui_blueprint
from spectree import Response

from appfactory.contract import contract
from appfactory.contract.document import openapi_document

bp = Blueprint("contract", __name__)

DOCS_PATH = "/docs"
pages = get_swaggerui_blueprint(
    DOCS_PATH,
    "/openapi.json",
    config={"app_name": "aigen API", "persistAuthorization": True, "displayRequestDuration": True},
    blueprint_name="docs",
)


@bp.get("/openapi.json")
@contract.validate(resp=Response(HTTP_200=None), tags=["contract"])
def document() -> dict:
    """This document: OpenAPI 3.1 of every endpoint."""
    state = current_app.extensions
    if "openapi" not in state:  # the routes and the configuration are fixed once the app is built
        state["openapi"] = openapi_document(current_app)
    return state["openapi"]


@bp.get(DOCS_PATH)
@contract.validate(resp=Response(HTTP_308=None), tags=["contract"])
def docs() -> tuple[dict, int, dict]:
    """The documentation page lives at /docs/ (a JSON redirect, like every other answer)."""
    return {"location": f"{DOCS_PATH}/"}, 308, {"Location": f"{DOCS_PATH}/"}
