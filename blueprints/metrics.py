"""Prometheus scrape endpoint; never rate limited."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from spectree import Response as Documented

from appfactory.contract import contract
from appfactory.extensions import limiter
from appfactory.observability import metrics

bp = Blueprint("metrics", __name__)
limiter.exempt(bp)


@bp.get("/metrics")
@contract.validate(resp=Documented(HTTP_200=None), tags=["metrics"])
def scrape() -> Response:
    """Prometheus text exposition, summed over the workers."""
    body, content_type = metrics.exposition(current_app.extensions["metrics"]["dir"])
    return Response(body, content_type=content_type)
