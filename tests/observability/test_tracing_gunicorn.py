"""Tracing under a real gunicorn (gevent workers, Redis, PostgreSQL): the spans of a cache HIT, a MISS
with its model call and a database read reach an OTLP/HTTP receiver; they are flushed when a worker
stops; a collector that refuses or never answers changes nothing for the requests."""

from __future__ import annotations

import json
import statistics
import time

import pytest
import requests

from tests.conftest import key_namespace
from tests.support.gunicorn import Gunicorn
from tests.support.otlp import Collector, Span, draw, tree
from tests.support.services import REDIS_URL, free_port, require_redis
from tests.support.upstream import FakeModel

pytestmark = pytest.mark.slow

GENERATE = "/api/v1/ai/generate"
SHOWN = (
    "http.route",
    "http.status_code",
    "db.system.name",
    "aigen.ratelimit.allowed",
    "aigen.cache.prefix",
    "aigen.cache.outcome",
    "aigen.cache.read_ahead",
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "server.address",
)


def _names(span: Span) -> list[str]:
    return [child.name for child in span.children]


def _trace(collector: Collector, trace_id: str, count: int) -> tuple[Span, str]:
    """The trace's root span (its children linked) once its `count` spans arrived, and its drawing."""
    spans = collector.wait_for(trace_id, count)
    roots = tree(spans)
    drawing = draw(spans, SHOWN)
    assert len(roots) == 1 and len(spans) == count, drawing
    return roots[0], drawing


def test_the_spans_of_a_miss_a_hit_and_a_database_read(postgres):
    require_redis()
    with Collector() as collector, FakeModel(delay=0.05) as model:
        env = {
            "DATABASE_URL": postgres.url,
            "REDIS_URL": REDIS_URL,
            "CACHE_NAMESPACE": key_namespace(),
            "AI_PROVIDER": "openai",
            "AI_BASE_URL": model.url,
            "AI_MODEL": "m1",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "LOG_LEVEL": "INFO",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with Gunicorn(env, workers=2) as server, requests.Session() as session:
            miss = session.get(f"{server.url}{GENERATE}?prompt=traced")
            hit = session.get(f"{server.url}{GENERATE}?prompt=traced")
            read = session.get(f"{server.url}/api/v1/templates")
            assert [r.headers.get("X-Cache") for r in (miss, hit, read)] == ["MISS", "HIT", "MISS"]
            miss_root, miss_drawing = _trace(collector, miss.headers["X-Request-ID"], 4)
            hit_root, hit_drawing = _trace(collector, hit.headers["X-Request-ID"], 3)
            read_root, read_drawing = _trace(collector, read.headers["X-Request-ID"], 5)
            log = server.log()

    # MISS: the limiter's round trip, then the cache's lookup holding the model call.
    assert miss_root.name == f"GET {GENERATE}" and miss_root.kind == "server"
    assert _names(miss_root) == ["ratelimit", "cache"], miss_drawing
    ratelimit, cache = miss_root.children
    assert ratelimit.kind == "client" and ratelimit.attributes["db.system.name"] == "redis"
    assert ratelimit.attributes["aigen.ratelimit.allowed"] is True
    assert cache.attributes["aigen.cache.outcome"] == "MISS"
    (chat,) = cache.children
    assert chat.name == "chat m1" and chat.kind == "client"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.request.model"] == "m1"
    assert chat.ms >= 50  # the model's delay is inside it
    # The model server was called with the trace's context, its parent the model call's span.
    (received,) = model.received
    assert received["traceparent"].split("-")[1:3] == [miss_root.trace_id, chat.span_id]

    # HIT: answered from the entry the limiter's round trip read; no model call.
    assert _names(hit_root) == ["ratelimit", "cache"], hit_drawing
    hit_cache = hit_root.children[1]
    assert hit_cache.attributes["aigen.cache.outcome"] == "HIT"
    assert hit_cache.attributes["aigen.cache.read_ahead"] is True
    assert hit_cache.children == []

    # A database read: the templates page's statements inside its cache MISS, on PostgreSQL.
    assert _names(read_root) == ["ratelimit", "cache"], read_drawing
    statements = read_root.children[1].children
    assert [s.name for s in statements] == ["SELECT templates", "SELECT templates"]
    assert {s.attributes["db.system.name"] for s in statements} == {"postgresql"}
    assert all(s.parent_id == read_root.children[1].span_id for s in statements)

    # Every span of the three requests says which service it is.
    assert {span.service for span in collector.spans} == {"aigen"}
    # The request line carries the trace id; no X-Request-ID was sent, so it is the request id too.
    lines = [json.loads(line) for line in log.splitlines() if '"appfactory.access"' in line]
    by_id = {line["request_id"]: line for line in lines}
    for response in (miss, hit, read):
        request_id = response.headers["X-Request-ID"]
        assert by_id[request_id]["trace_id"] == request_id
    print(miss_drawing, hit_drawing, read_drawing, sep="\n")  # docs/tracing.md's trees: pytest -s


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_queued_spans_are_exported_when_a_worker_stops(tmp_path, worker_class):
    """The batch processor's thread is a greenlet under gevent, a thread under gthread: either way
    the spans still queued leave when the worker exits."""
    with Collector() as collector:
        env = {
            "GUNICORN_WORKER_CLASS": worker_class,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
            "AI_LOCAL_LATENCY_MS": "0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",  # no export until the worker exits
        }
        server = Gunicorn(env, workers=1)
        with server:
            response = requests.get(f"{server.url}{GENERATE}?prompt=last")
            time.sleep(0.5)
            assert collector.spans == []
            stopped = time.monotonic()
            server.stop()  # SIGTERM: the worker drains, exits, and flushes on its way out
            took = time.monotonic() - stopped
        spans = collector.trace(response.headers["X-Request-ID"])
    assert [span.name for span in tree(spans)] == [f"GET {GENERATE}"]
    assert took < 10


def _timings(url: str, count: int) -> list[float]:
    """Seconds each of `count` HITs took over one keep-alive connection; every one a 200."""
    with requests.Session() as session:  # closed before the server stops: no keep-alive to wait out
        assert session.get(f"{url}{GENERATE}?prompt=timed").status_code == 200  # the entry
        took = []
        for _ in range(count):
            started = time.perf_counter()
            response = session.get(f"{url}{GENERATE}?prompt=timed", timeout=5)
            took.append(time.perf_counter() - started)
            assert response.status_code == 200 and response.headers["X-Cache"] == "HIT"
    return took


def test_a_collector_that_refuses_or_never_answers_changes_nothing(tmp_path, silent_server):
    base = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "AI_LOCAL_LATENCY_MS": "0",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "LOG_LEVEL": "WARNING",
        # Export all the time, with a small queue: it fills, and spans are dropped, not waited for.
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
    }
    collectors = {
        "off": None,
        "refused": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "silent": f"http://127.0.0.1:{silent_server}",  # accepts, never answers
    }
    medians, worst, stops = {}, {}, {}
    for name, endpoint in collectors.items():
        env = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint or ""}
        server = Gunicorn(env, workers=1)
        with server:
            took = _timings(server.url, 300)
            stopped = time.monotonic()
            server.stop()
            stops[name] = time.monotonic() - stopped
        medians[name], worst[name] = statistics.median(took), max(took)
    print(
        {name: f"median {medians[name] * 1000:.2f} ms, worst {worst[name] * 1000:.1f} ms" for name in medians}
    )
    for name in ("refused", "silent"):
        assert medians[name] < medians["off"] * 2 + 0.002, medians
        assert worst[name] < 0.5, worst
        assert stops[name] < 10, stops  # a worker's exit waits for the collector 5 s at most
