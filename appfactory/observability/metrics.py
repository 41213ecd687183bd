"""Prometheus metrics, summed over every gunicorn worker through prometheus-client's multiprocess mode."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event

UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_LABELS = ("method", "route", "status")
# Server time: a cache hit is well under a millisecond, an uncached generation takes seconds.
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

REQUESTS = Counter(
    "aigen_http_requests_total", "Requests served, by route template, method and status.", _REQUEST_LABELS
)
REQUEST_SECONDS = Histogram(
    "aigen_http_request_duration_seconds",
    "Server time per request, by route template, method and status.",
    _REQUEST_LABELS,
    buckets=_REQUEST_BUCKETS,
)
RATE_LIMITED = Counter("aigen_rate_limited_requests_total", "Requests refused with 429, by route.", ["route"])
CACHE_HITS = Counter("aigen_cache_hits_total", "Cache lookups that found a value, by key prefix.", ["prefix"])
CACHE_MISSES = Counter(
    "aigen_cache_misses_total", "Cache lookups that found nothing, by key prefix.", ["prefix"]
)
UPSTREAM_SECONDS = Histogram(
    "aigen_upstream_latency_seconds",
    "Time the upstream model took to answer, by provider.",
    ["provider"],
    buckets=_UPSTREAM_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "aigen_upstream_errors_total",
    "Model server calls that failed or were not made, by kind (throttled, timeout, busy, breaker_open, ...).",
    ["kind"],
)
UPSTREAM_TOKENS = Counter(
    "aigen_upstream_tokens_total",
    "Tokens the model server's calls used, by model and kind (prompt, completion); never by key.",
    ["model", "kind"],
)
upstream_breaker_open = Gauge(
    "aigen_upstream_breaker_open",
    "1 while a worker's breaker for the model server is open",
    multiprocess_mode="livemax",
)
POOL_CHECKED_OUT = Gauge(
    "aigen_db_pool_checked_out_connections",
    "Database connections lent out by the pools of live worker processes.",
    multiprocess_mode="livesum",
)

# Label children by their raw key: .labels() takes a lock and builds a tuple, a dict lookup does not.
_request_children: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
_cache_children: dict[tuple[str, bool], Any] = {}
_upstream_children: dict[str, Any] = {}


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Count one served request and its server time under its route template."""
    if method not in _METHODS:
        method = "OTHER"  # arbitrary verbs must not grow the label set
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        labels = (method, route or UNMATCHED_ROUTE, str(status))
        children = _request_children.setdefault(
            key, (REQUESTS.labels(*labels), REQUEST_SECONDS.labels(*labels))
        )
    children[0].inc()
    children[1].observe(seconds)
    if status == 429:
        RATE_LIMITED.labels(route or UNMATCHED_ROUTE).inc()


def record_cache(prefix: str, hit: bool) -> None:
    """Count a cache lookup under `prefix` as a hit or a miss."""
    child = _cache_children.get((prefix, hit))
    if child is None:
        child = (CACHE_HITS if hit else CACHE_MISSES).labels(prefix)
        _cache_children[(prefix, hit)] = child
    child.inc()


def observe_upstream(provider: str, seconds: float) -> None:
    """Record how long one upstream model call took."""
    child = _upstream_children.get(provider)
    if child is None:
        child = _upstream_children.setdefault(provider, UPSTREAM_SECONDS.labels(provider))
    child.observe(seconds)


def count_upstream_error(kind: str) -> None:
    """Count one failed (or refused) model server call of `kind`."""
    UPSTREAM_ERRORS.labels(kind).inc()


def count_tokens(model: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Count what one model call used (the model server's figures, or the estimate)."""
    UPSTREAM_TOKENS.labels(model, "prompt").inc(prompt_tokens)
    UPSTREAM_TOKENS.labels(model, "completion").inc(completion_tokens)


def track_pool(engine: Engine) -> None:
    """Keep POOL_CHECKED_OUT in step with the engine's pool; costs nothing on requests without SQL."""
    event.listen(engine, "checkout", lambda *_: POOL_CHECKED_OUT.inc())
    event.listen(engine, "checkin", lambda *_: POOL_CHECKED_OUT.dec())
    POOL_CHECKED_OUT.inc(0)  # a worker that has not used its pool yet still reports 0


def multiprocess_dir() -> str | None:
    """The directory worker processes share metrics through, when gunicorn's master named one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(directory: str | None) -> tuple[bytes, str]:
    """The text exposition: every process's files in multiprocess mode, else this process's registry."""
    if directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def init_app(app: Flask) -> None:
    """Follow the app's pool and remember where the exposition is read from."""
    track_pool(app.extensions["db"])
    app.extensions["metrics"] = {"enabled": app.config["METRICS_ENABLED"], "dir": multiprocess_dir()}
