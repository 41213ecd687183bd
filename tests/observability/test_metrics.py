"""/metrics in one process (Flask test client): route templates, cache, upstream, pool, exemption."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appfactory import create_app
from appfactory.extensions import db
from appfactory.observability import metrics
from tests.conftest import base_overrides
from tests.support.services import unavailable
from tests.support.windows import clear_of_minute_edge


def samples(client) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition, keyed by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text: str) -> None:
    """Fail with promtool's complaint when the exposition is not valid."""
    if shutil.which("promtool") is None:
        unavailable("promtool is not installed (Debian package: prometheus)")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


TEMPLATE_ROUTE = "/api/v1/templates/<id:template_id>"


def test_requests_counted_by_route_template_not_path(client):
    before = samples(client)
    for template_id in (1, 2, 3):
        assert client.get(f"/api/v1/templates/{template_id}").status_code == 404
    client.get("/no/such/thing")
    client.get("/another/unknown/path")
    after = samples(client)

    counter = "aigen_http_requests_total"
    labels = {"method": "GET", "route": TEMPLATE_ROUTE, "status": "404"}
    assert value(after, counter, **labels) - value(before, counter, **labels) == 3
    unmatched = {"method": "GET", "route": metrics.UNMATCHED_ROUTE, "status": "404"}
    assert value(after, counter, **unmatched) - value(before, counter, **unmatched) == 2
    assert not [key for key in after if ("route", "/api/v1/templates/1") in key[1]]
    histogram = "aigen_http_request_duration_seconds_count"
    assert value(after, histogram, **labels) - value(before, histogram, **labels) == 3


def test_odd_methods_share_one_label(client):
    before = samples(client)
    client.open("/health/live", method="BREW")
    after = samples(client)
    labels = {"method": "OTHER", "route": metrics.UNMATCHED_ROUTE, "status": "405"}
    assert (
        value(after, "aigen_http_requests_total", **labels)
        - value(before, "aigen_http_requests_total", **labels)
        == 1
    )


def test_cache_and_upstream_helpers(client):
    before = samples(client)
    metrics.record_cache("ai", True)
    metrics.record_cache("ai", True)
    metrics.record_cache("ai", False)
    metrics.observe_upstream("local", 0.2)
    after = samples(client)
    assert (
        value(after, "aigen_cache_hits_total", prefix="ai")
        - value(before, "aigen_cache_hits_total", prefix="ai")
        == 2
    )
    assert (
        value(after, "aigen_cache_misses_total", prefix="ai")
        - value(before, "aigen_cache_misses_total", prefix="ai")
        == 1
    )
    count = "aigen_upstream_latency_seconds_count"
    assert value(after, count, provider="local") - value(before, count, provider="local") == 1
    bucket = "aigen_upstream_latency_seconds_bucket"
    assert (
        value(after, bucket, provider="local", le="0.25") - value(before, bucket, provider="local", le="0.25")
        == 1
    )


def test_rate_limited_requests_are_counted_and_metrics_is_exempt(database_url):
    app = create_app(base_overrides(DATABASE_URL=database_url, RATE_LIMIT_PER_MINUTE=2))
    client = app.test_client()
    clear_of_minute_edge()
    try:
        before = samples(client)
        statuses = [client.get("/api/v1/templates/1").status_code for _ in range(4)]
        assert statuses.count(429) == 2
        for _ in range(5):
            assert client.get("/metrics").status_code == 200  # never limited
        after = samples(client)
    finally:
        app.extensions["db"].dispose()
    name = "aigen_rate_limited_requests_total"
    assert value(after, name, route=TEMPLATE_ROUTE) - value(before, name, route=TEMPLATE_ROUTE) == 2


def test_pool_checked_out_gauge_follows_the_pool(app, anonymous_client):
    client = anonymous_client  # a key would be read from the database, holding a connection itself
    gauge = "aigen_db_pool_checked_out_connections"
    idle = value(samples(client), gauge)
    with app.app_context():
        db.connection()
        assert value(samples(client), gauge) == idle + 1
    assert value(samples(client), gauge) == idle
    client.get("/api/v1/templates")
    assert value(samples(client), gauge) == idle


def test_metrics_enabled_false_skips_request_metrics(database_url):
    app = create_app(base_overrides(DATABASE_URL=database_url, METRICS_ENABLED="false"))
    client = app.test_client()
    try:
        labels = {"method": "GET", "route": "/health/live", "status": "200"}
        before = value(samples(client), "aigen_http_requests_total", **labels)
        client.get("/health/live")
        assert value(samples(client), "aigen_http_requests_total", **labels) == before
    finally:
        app.extensions["db"].dispose()


@pytest.mark.parametrize("raw", ["maybe", "2"])
def test_metrics_enabled_must_be_a_boolean(raw):
    from appfactory import config

    with pytest.raises(config.ConfigError, match="METRICS_ENABLED"):
        config.load({"METRICS_ENABLED": raw})


def test_exposition_passes_promtool(client):
    client.get("/api/v1/templates/1")
    metrics.record_cache("templates", False)
    metrics.observe_upstream("local", 0.01)
    promtool_check(client.get("/metrics").get_data(as_text=True))


def test_ai_generation_counts_cache_outcomes_and_upstream_latency(client):
    before = samples(client)
    prompt = "/api/v1/ai/generate?prompt=metrics-probe"
    assert client.get(prompt).headers["X-Cache"] == "MISS"
    assert client.get(prompt).headers["X-Cache"] == "HIT"
    assert client.get(prompt).headers["X-Cache"] == "HIT"
    after = samples(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("aigen_cache_misses_total", prefix="ai") == 1
    assert delta("aigen_cache_hits_total", prefix="ai") == 2
    assert delta("aigen_upstream_latency_seconds_count", provider="local") == 1
    # The one model call's tokens (the local model's estimate), by model and kind; the hits spent none.
    usage = client.get(prompt).get_json()["usage"]
    assert delta("aigen_upstream_tokens_total", model="local-echo", kind="prompt") == usage["prompt_tokens"]
    completion = delta("aigen_upstream_tokens_total", model="local-echo", kind="completion")
    assert completion == usage["completion_tokens"] > 0


def test_the_readme_import_path_counts_the_same_metrics(client):
    from appfactory.metrics import observe_upstream, record_cache

    before = samples(client)
    record_cache("promised", True)
    observe_upstream("promised", 0.2)
    after = samples(client)
    assert (
        value(after, "aigen_cache_hits_total", prefix="promised")
        - value(before, "aigen_cache_hits_total", prefix="promised")
        == 1
    )
    count = "aigen_upstream_latency_seconds_count"
    assert value(after, count, provider="promised") - value(before, count, provider="promised") == 1
