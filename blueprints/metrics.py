"""Prometheus scrape endpoint for the operators' networks; never rate limited."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from spectree import Response as Documented

from appfactory.contract import contract
from appfactory.extensions import limiter
from appfactory.observability import metrics
from appfactory.web.operators import REFUSED, operators_only

bp = Blueprint("metrics", __name__)
limiter.exempt(bp)


@bp.get("/metrics")
@operators_only  # every client's activity, and tens of milliseconds of CPU a scrape
@contract.validate(resp=Documented(HTTP_200=None, HTTP_403=REFUSED), tags=["metrics"])
def scrape() -> Response:
    """Prometheus text exposition, summed over the workers.

    Answered to clients in OPS_ALLOW_NETWORKS only (403 to others)."""
    body, content_type = metrics.exposition(current_app.extensions["metrics"]["dir"])
    return Response(body, content_type=content_type)
