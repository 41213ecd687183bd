"""Tracing in-process: off unless an endpoint is set; a span per request with its children, sent over
OTLP/HTTP to a receiver on 127.0.0.1 (tests/support/otlp.py); trace context in and out."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from appfactory import create_app
from appfactory.config import ConfigError, load
from appfactory.observability import tracing
from appfactory.observability.logging import StdoutHandler
from tests.conftest import base_overrides
from tests.support.otlp import Collector, Span, tree
from tests.support.upstream import FakeModel

ROOT = Path(__file__).resolve().parents[2]
GENERATE = "/api/v1/ai/generate"
CALLER = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"  # a caller's trace and span ids


@pytest.fixture
def collector():
    with Collector() as receiver:
        yield receiver


@pytest.fixture
def traced(new_app, collector):
    """build(**overrides) -> an app tracing to `collector`; the process's tracer stops at the end."""

    def build(**overrides):
        return new_app(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, **overrides)

    yield build
    tracing.stop()


def exported(app, collector: Collector) -> list[Span]:
    """Every span the app ended so far, once exported to the receiver."""
    app.extensions["tracing"].processor.force_flush()
    return list(collector.spans)


def only(spans: list[Span], name: str) -> Span:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


# --- off -------------------------------------------------------------------------------------------

_LOADED = """
import sys
from appfactory import create_app
app = create_app({"DATABASE_URL": "sqlite://"})
loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.instrumentation",
                                                   "opentelemetry.exporter"))]
hooks = [f.__module__ for funcs in app.before_request_funcs.values() for f in funcs]
listeners = len(app.extensions["db"].dispatch.before_cursor_execute)
print(loaded, "tracing" in app.extensions, [h for h in hooks if "opentelemetry" in h], listeners)
"""


@pytest.mark.parametrize(
    "environment",
    [{}, {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}],
    ids=["no endpoint", "sdk disabled"],
)
def test_off_nothing_of_the_tracing_sdk_is_loaded_or_installed(environment):
    env = {"PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING", **environment}
    done = subprocess.run(
        [sys.executable, "-c", _LOADED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # No tracer provider, exporter or instrumentation module; no hook, no statement listener.
    assert done.stdout.split("\n")[-2] == "[] False [] 0"


def test_off_the_helpers_answer_at_once(new_app):
    app = new_app(OTEL_SDK_DISABLED=True, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert "tracing" not in app.extensions and tracing._state is None
    headers = {"Content-Type": "application/json"}
    assert tracing.outgoing_headers(headers) is headers
    assert tracing.span("cache") is tracing.NO_SPAN
    assert tracing.model_call("local", "m", 1, 1.0, None) is tracing.NO_SPAN
    with tracing.span("cache") as span:
        span.set_attribute("a", 1)
        tracing.event("retry", {"b": 2})
        tracing.note("c", 3)
        tracing.note_usage(1, 2)
    response = app.test_client().get(f"{GENERATE}?prompt=x")
    assert response.status_code == 200 and len(response.headers["X-Request-ID"]) == 32


def test_the_endpoint_and_the_switch():
    settings = load({})
    assert tracing.traces_endpoint(settings) is None
    base = load({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert tracing.traces_endpoint(base) == "http://collector:4318/v1/traces"
    own = load(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example/otlp/traces",
        }
    )
    assert tracing.traces_endpoint(own) == "https://c.example/otlp/traces"
    off = load({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"})
    assert tracing.traces_endpoint(off) is None


def test_bad_values_stop_start_up_naming_the_variable():
    with pytest.raises(ConfigError) as raised:
        load(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318",
                "OTEL_TRACES_SAMPLER": "sometimes",
                "OTEL_TRACES_SAMPLER_ARG": "1.5",
                "OTEL_SDK_DISABLED": "maybe",
            }
        )
    named = [problem.split(" ")[0] for problem in raised.value.problems]
    assert named == [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SDK_DISABLED",
    ]


def test_settings_the_sdk_refuses_stop_start_up_in_one_line(new_app, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")  # below the batch size (512)
    with pytest.raises(ConfigError) as raised:
        new_app(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert raised.value.lines() == [
        "configuration error: OTEL_BSP_* / OTEL_EXPORTER_OTLP_* variables: "
        "max_export_batch_size must be less than or equal to max_queue_size."
    ]
    assert tracing._state is None


# --- the spans of a request ------------------------------------------------------------------------


def test_a_miss_calls_the_model_inside_the_cache_span_and_a_hit_does_not(traced, collector):
    app = traced()
    client = app.test_client()
    miss = client.get(f"{GENERATE}?prompt=hello&max_tokens=8")
    hit = client.get(f"{GENERATE}?prompt=hello&max_tokens=8")
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    spans = exported(app, collector)
    roots = tree(spans)
    assert [root.name for root in roots] == [f"GET {GENERATE}"] * 2
    # No X-Request-ID was sent: the trace id is the request id.
    assert [root.trace_id for root in roots] == [miss.headers["X-Request-ID"], hit.headers["X-Request-ID"]]
    assert roots[0].kind == "server" and roots[0].attributes["http.status_code"] == 200
    assert roots[0].attributes["http.target"] == GENERATE  # the prompt stays out of the trace

    (cache,) = roots[0].children
    assert cache.name == "cache"
    assert cache.attributes["aigen.cache.outcome"] == "MISS"
    assert cache.attributes["aigen.cache.prefix"] == "ai"
    (chat,) = cache.children
    assert chat.name == "chat local-echo" and chat.kind == "client"
    assert chat.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "local",
        "gen_ai.system": "local",
        "gen_ai.request.model": "local-echo",
        "gen_ai.request.max_tokens": 8,
        "gen_ai.request.temperature": 0.7,
    }  # the local model reports no usage: no gen_ai.usage.*

    (hit_cache,) = roots[1].children
    assert hit_cache.attributes["aigen.cache.outcome"] == "HIT" and hit_cache.children == []


def test_each_database_statement_is_a_child_span(database_url, collector):
    overrides = base_overrides(DATABASE_URL=database_url, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint)
    app = create_app(overrides)
    try:
        assert app.test_client().get("/api/v1/templates").status_code == 200
        spans = exported(app, collector)
    finally:
        tracing.stop()
        app.extensions["db"].dispose()
    (root,) = tree(spans)
    statements = root.children  # without Redis the templates page is not cached (shared_only)
    assert [s.name for s in statements] == ["SELECT templates", "SELECT templates"]  # count, page
    system = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    for statement in statements:
        assert statement.kind == "client"
        assert statement.attributes["db.system.name"] == system
        assert statement.attributes["db.operation.name"] == "SELECT"
        assert statement.attributes["db.collection.name"] == "templates"
        assert "FROM templates" in statement.attributes["db.query.text"]
    if system == "postgresql":
        assert statements[0].attributes["server.address"] == "127.0.0.1"


def test_the_callers_trace_goes_on_to_the_model_server(traced, collector):
    usage = {"prompt_tokens": 3, "completion_tokens": 5}
    with FakeModel(usage=usage) as model:
        app = traced(AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_MODEL="m1")
        traceparent = f"00-{CALLER[0]}-{CALLER[1]}-01"
        response = app.test_client().get(f"{GENERATE}?prompt=hi", headers={"traceparent": traceparent})
        assert response.status_code == 200
        spans = exported(app, collector)
    server, chat = only(spans, f"GET {GENERATE}"), only(spans, "chat m1")
    assert (server.trace_id, server.parent_id) == CALLER
    assert response.headers["X-Request-ID"] == CALLER[0]
    # The model server was asked within the model call's span.
    (received,) = model.received
    assert received["traceparent"].split("-")[1:3] == [CALLER[0], chat.span_id]
    assert chat.attributes["server.address"] == "127.0.0.1"
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 3
    assert chat.attributes["gen_ai.usage.output_tokens"] == 5


def test_retries_and_the_breakers_state_are_events_of_the_model_call(traced, collector):
    status = {"hi": [503, 200]}  # one transient failure, then an answer

    def answer(prompt, before):
        return status[prompt][before] if prompt in status else 500

    with FakeModel(status=answer, headers={"Retry-After": "0"}) as model:
        app = traced(
            AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_MODEL="m1", AI_RETRIES=1, AI_BREAKER_FAILURES=1
        )
        client = app.test_client()
        assert client.get(f"{GENERATE}?prompt=hi").status_code == 200
        assert client.get(f"{GENERATE}?prompt=down").status_code == 502  # the breaker opens
        assert client.get(f"{GENERATE}?prompt=again").status_code == 503  # refused at once
        spans = exported(app, collector)
    retried, failed, refused = [s for s in spans if s.name == "chat m1"]
    assert [name for name, _ in retried.events] == ["retry"]
    assert retried.events[0][1]["aigen.retry.reason"] == "503" and retried.status == 0
    assert "gen_ai.usage.input_tokens" not in retried.attributes  # no usage in the answer
    assert failed.status == 2 and failed.attributes["error.type"] == "server_error"
    assert ("breaker.failure", {"aigen.breaker.state": "open"}) in failed.events
    assert refused.status == 2 and refused.attributes["error.type"] == "upstream_unavailable"
    assert refused.events[0][0] == "breaker.refused"


@pytest.fixture
def request_lines(capsys):
    """lines() -> the request lines written so far, as dicts (the app must log at INFO)."""

    def lines() -> list[dict]:
        out = capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in out if '"appfactory.access"' in line]

    yield lines
    for handler in logging.getLogger().handlers:
        if isinstance(handler, StdoutHandler):
            handler.stream = sys.__stdout__  # capsys closes its stream after the test


def test_the_request_line_carries_the_trace_id(traced, collector, request_lines):
    app = traced(LOG_LEVEL="INFO")
    client = app.test_client()
    own = client.get("/health/live", headers={"X-Request-ID": "caller-7"})
    generated = client.get("/health/live")
    lines = request_lines()
    spans = exported(app, collector)
    assert own.headers["X-Request-ID"] == "caller-7"  # a sane id of the caller's is kept
    assert generated.headers["X-Request-ID"] == spans[1].trace_id  # else the trace's is the request's
    assert [line["request_id"] for line in lines] == ["caller-7", spans[1].trace_id]
    assert [line["trace_id"] for line in lines] == [span.trace_id for span in spans]


def test_an_unsampled_request_exports_nothing_and_logs_no_trace_id(traced, collector, request_lines):
    app = traced(LOG_LEVEL="INFO", OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG=0)
    response = app.test_client().get(f"{GENERATE}?prompt=quiet")
    assert response.status_code == 200
    (line,) = request_lines()
    assert exported(app, collector) == []
    assert "trace_id" not in line
    assert line["request_id"] == response.headers["X-Request-ID"]  # still the (unsampled) trace's id


def test_the_service_name_and_version_are_on_every_span(traced, collector):
    app = traced(OTEL_SERVICE_NAME="aigen-eu")
    app.test_client().get("/health/live")
    (span,) = exported(app, collector)
    assert span.service == "aigen-eu"


def test_a_streamed_model_call_is_one_chat_span_from_admission_to_its_last_piece(traced, collector):
    with FakeModel(delay=0.2, counts_tokens=True) as model:
        app = traced(AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_MODEL="m1")
        client = app.test_client()
        native = client.post(GENERATE, json={"prompt": "stream these four words", "stream": True})
        assert native.status_code == 200 and b"event: done" in native.get_data()
        chat = {"model": "m1", "messages": [{"role": "user", "content": "and these"}], "stream": True}
        v1 = client.post("/v1/chat/completions", json=chat)
        assert v1.status_code == 200 and v1.get_data().endswith(b"data: [DONE]\n\n")
        spans = exported(app, collector)
    streamed = [s for s in spans if s.name == "chat m1"]
    assert len(streamed) == 2 and all(s.kind == "client" and s.status == 0 for s in streamed)
    roots = {s.span_id: s for s in spans if s.name.startswith("POST ")}
    assert {s.parent_id for s in streamed} == set(roots)  # each the child of its request's span
    # The model server was asked within it, and its reported usage is on it.
    assert [r["traceparent"].split("-")[2] for r in model.received] == [s.span_id for s in streamed]
    assert [s.attributes["gen_ai.usage.output_tokens"] for s in streamed] == [5, 3]
    assert all(s.end_ns - s.start_ns >= 100_000_000 for s in streamed)  # open until the last piece
