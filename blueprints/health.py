"""Health endpoints for people and orchestrators; never rate limited, never cached."""

from __future__ import annotations

from flask import Blueprint, current_app

from appfactory import cache as cache_module
from appfactory import ratelimit
from appfactory.db.engine import BEHIND, CURRENT, DOWN
from appfactory.extensions import db, limiter, redis_client

bp = Blueprint("health", __name__)
limiter.exempt(bp)


def _report() -> tuple[dict, int]:
    schema, db_ms = db.probe()
    db_ok = schema == CURRENT  # answering, and with every table the code reads
    report: dict = {"database": "disconnected" if schema == DOWN else "connected"}
    latency = {"database_ms": db_ms}
    redis_ok = True
    if redis_client.configured:
        redis_ok, latency["redis_ms"] = redis_client.probe()
        report["redis"] = "connected" if redis_ok else "disconnected"
    else:
        report["redis"] = "not_configured"
    status = "unhealthy" if not db_ok else ("healthy" if redis_ok else "degraded")
    report = {
        "status": status,
        **report,
        "schema": {CURRENT: "current", BEHIND: "behind"}.get(schema, "unknown"),
        "version": current_app.config["VERSION"],
        "cache": cache_module.backend_name(),
        "rate_limit_storage": ratelimit.storage_name(),
        "upstream": current_app.extensions["ai_guard"].state(),
        "pool": db.pool_status(),
        "latency_ms": latency,
    }
    return report, 200 if db_ok else 503


@bp.get("/health")
def health() -> tuple[dict, int]:
    return _report()


@bp.get("/health/live")
def live() -> dict:
    return {"status": "alive"}


@bp.get("/health/ready")
def ready() -> tuple[dict, int]:
    report, status = _report()
    return {"status": report["status"]}, status
