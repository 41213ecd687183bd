"""Prometheus scrape endpoint; never rate limited."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from appfactory.extensions import limiter
from appfactory.observability import metrics

bp = Blueprint("metrics", __name__)
limiter.exempt(bp)


@bp.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition(current_app.extensions["metrics"]["dir"])
    return Response(body, content_type=content_type)
