"""Health endpoints for operators and orchestrators; never rate limited, never cached."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, current_app
from pydantic import BaseModel, Field
from spectree import Response

from appfactory import cache as cache_module
from appfactory import ratelimit
from appfactory.contract import contract
from appfactory.db.engine import BEHIND, CURRENT, DOWN
from appfactory.extensions import db, limiter, redis_client
from appfactory.web.operators import REFUSED, operators_only

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


Status = Literal["healthy", "degraded", "unhealthy"]


class Report(BaseModel):
    status: Status
    database: Literal["connected", "disconnected"]
    redis: Literal["connected", "disconnected", "not_configured"]
    schema_: Literal["current", "behind", "unknown"] = Field(alias="schema")
    version: str
    cache: Literal["redis", "simple", "bypass"]
    rate_limit_storage: Literal["redis", "memory", "memory-fallback", "disabled"]
    upstream: dict
    pool: dict
    latency_ms: dict[str, float]


class Readiness(BaseModel):
    status: Status


class Liveness(BaseModel):
    status: Literal["alive"]


_TAGS = ["health"]


@bp.get("/health")
@operators_only  # what it reports is for operators, and each call queries the database
@contract.validate(resp=Response(HTTP_200=Report, HTTP_503=Report, HTTP_403=REFUSED), tags=_TAGS)
def health() -> tuple[dict, int]:
    """The service and what it runs on; 503 while the database does not answer (or lacks tables).

    Answered to clients in OPS_ALLOW_NETWORKS only (403 to others); /health/live and /health/ready
    answer everyone."""
    return _report()


@bp.get("/health/live")
@contract.validate(resp=Response(HTTP_200=Liveness), tags=_TAGS)
def live() -> dict:
    """The process answers (no dependency is asked): for liveness probes."""
    return {"status": "alive"}


@bp.get("/health/ready")
@contract.validate(resp=Response(HTTP_200=Readiness, HTTP_503=Readiness), tags=_TAGS)
def ready() -> tuple[dict, int]:
    """Whether to send traffic here, as /health decides it: for readiness probes."""
    report, status = _report()
    return {"status": report["status"]}, status
