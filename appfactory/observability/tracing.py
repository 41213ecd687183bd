"""OpenTelemetry tracing (SPEC §12, docs/tracing.md): a span per request, with children for the rate
limiter's round trip, the cache, each database statement and each model call; off unless an OTLP
endpoint is set.

Off, nothing of OpenTelemetry is imported and no hook, listener or filter is installed: the helpers
the request path calls (`span`, `model_call`, `event`, `note`, `outgoing_headers`) return at once,
`span` and `model_call` a shared do-nothing span. On, `init_tracing(app)` (create_app, so in each
gunicorn worker after the fork) builds the process's tracer: a BatchSpanProcessor (bounded queue, its
own thread, a greenlet under gevent) exporting over OTLP/HTTP, flushed for at most FLUSH_TIMEOUT_MS at
exit. A child span is made only inside a recording span: an unsampled request costs a context lookup
per helper, and nothing is traced outside a request (the health probe's thread, `flask ai warm`).

The process has one tracer, like the SDK's global provider (which the service does not set): the last
app built with tracing on owns it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from appfactory.config import ConfigError

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

CLIENT, INTERNAL = "client", "internal"
# Where the request's span puts its trace id for web/hooks.start: the request id, unless the caller
# sent a sane X-Request-ID of its own.
TRACE_ID_KEY = "aigen.trace_id"
FLUSH_TIMEOUT_MS = 5000  # at exit: a collector that does not answer holds a stopping worker this long
DEFAULT_SERVICE_NAME = "aigen"


class _NoSpan:
    """What the helpers return while nothing is traced: every span method, doing nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        return None

    def end(self, error: BaseException | None = None, usage: tuple[int, int] | None = None) -> None:
        return None


NO_SPAN = _NoSpan()
_state: _Tracing | None = None  # the process's tracer while tracing is on


def traces_endpoint(config: Mapping[str, Any]) -> str | None:
    """The URL spans are posted to; None when tracing is off (no endpoint, or OTEL_SDK_DISABLED)."""
    if config["OTEL_SDK_DISABLED"]:
        return None
    if config["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]:
        return config["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = config["OTEL_EXPORTER_OTLP_ENDPOINT"]
    return f"{base.rstrip('/')}/v1/traces" if base else None


def init_tracing(app: Flask) -> None:
    """Trace the app's requests when an endpoint is configured; otherwise do nothing at all."""
    endpoint = traces_endpoint(app.config)
    if endpoint is None:
        return
    global _state
    stop()  # another app's, in this process (tests)
    try:
        _state = _Tracing(app.config, endpoint)
    except ValueError as exc:  # the SDK's own reading of OTEL_BSP_* or OTEL_EXPORTER_OTLP_*
        raise ConfigError(f"OTEL_BSP_* / OTEL_EXPORTER_OTLP_* variables: {exc}") from None
    app.extensions["tracing"] = _state
    _state.instrument(app)


def stop() -> None:
    """Flush and shut the process's tracer down (worker exit; tests); tracing is off afterwards."""
    global _state
    if _state is not None:
        state, _state = _state, None
        state.shutdown()


def span(name: str, kind: str = INTERNAL, attributes: Mapping[str, Any] | None = None, ok: tuple = ()) -> Any:
    """A child of the current span, current inside the `with` block; NO_SPAN when nothing is traced.

    An exception leaving the block marks the span failed, unless it is one of `ok` (control flow) or
    a client error (an exception whose `status` is below 500).
    """
    state = _state
    if state is None:
        return NO_SPAN
    return state.child(name, kind, attributes, ok)


def model_call(provider: str, model: str, max_tokens: int, temperature: float, upstream: str | None) -> Any:
    """The span of one model call, with the GenAI semantic conventions' attributes (a chat)."""
    state = _state
    if state is None:
        return NO_SPAN
    return state.child(
        f"chat {model}", CLIENT, _chat_attributes(provider, model, max_tokens, temperature, upstream), ()
    )


def model_stream(provider: str, model: str, max_tokens: int, temperature: float, upstream: str | None) -> Any:
    """The span of one streamed model call: current within its `with` block (admission, the first
    piece: retries and traceparent belong to it), ended by `.end(error, usage)` when the stream ends,
    whenever and wherever that is (the response's close)."""
    state = _state
    if state is None or not state.current_span().is_recording():
        return NO_SPAN
    attributes = _chat_attributes(provider, model, max_tokens, temperature, upstream)
    span = state.tracer.start_span(f"chat {model}", kind=state.kinds[CLIENT], attributes=attributes)
    return _Streamed(state, span)


def _chat_attributes(
    provider: str, model: str, max_tokens: int, temperature: float, upstream: str | None
) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the attribute's name before semantic conventions 1.37
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": max_tokens,
        "gen_ai.request.temperature": temperature,
        **_server_of(upstream),
    }


def event(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """An event on the current span (a retry, the breaker's state), if it is recording."""
    if _state is not None:
        _state.current_span().add_event(name, attributes)


def note(key: str, value: Any) -> None:
    """An attribute of the current span, if it is recording."""
    if _state is not None:
        _state.current_span().set_attribute(key, value)


def note_usage(input_tokens: Any, output_tokens: Any) -> None:
    """The token counts a model server reported, on the current (model call's) span; a count that is
    not a whole number (absent, null, text) is left out."""
    if _state is not None:
        current = _state.current_span()
        for key, count in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            if type(count) is int:
                current.set_attribute(f"gen_ai.usage.{key}", count)


def outgoing_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` with the current trace context (W3C traceparent) added, for a call to another server;
    the same dict, untouched, when nothing is traced."""
    if _state is None:
        return headers
    return _state.with_context(headers)


def _server_of(url: str | None) -> dict[str, Any]:
    parts = urlsplit(url) if url and "://" in url else None
    if parts is None or not parts.hostname:
        return {}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname, "server.port": port}


class _Tracing:
    """The process's tracer provider, its exporter and what installs the request span."""

    def __init__(self, config: Mapping[str, Any], endpoint: str) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from appfactory import __version__

        self.endpoint = endpoint
        self.provider = TracerProvider(
            sampler=_sampler(config["OTEL_TRACES_SAMPLER"], config["OTEL_TRACES_SAMPLER_ARG"]),
            resource=_resource(Resource, config["OTEL_SERVICE_NAME"], __version__),
            shutdown_on_exit=False,  # ours below waits a bounded time
        )
        # Headers, timeout, compression and certificates from the standard OTEL_EXPORTER_OTLP_*;
        # the queue and batch sizes and the delay from OTEL_BSP_*.
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("appfactory")
        self.kinds = {CLIENT: trace.SpanKind.CLIENT, INTERNAL: trace.SpanKind.INTERNAL}
        self.current_span = trace.get_current_span
        self._in_context = trace.set_span_in_context
        self._attach, self._detach = context.attach, context.detach
        self._inject = propagate.inject
        self._error = trace.Status(trace.StatusCode.ERROR)
        self._log_filter = _TraceIdFilter(trace.get_current_span)
        logging.getLogger("appfactory.access").addFilter(self._log_filter)
        atexit.register(self.shutdown)

    def instrument(self, app: Flask) -> None:
        """The request span (opentelemetry-instrumentation-flask), opened before any other hook and
        closed after the others; a span per database statement."""
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        before = app.before_request_funcs.setdefault(None, [])
        teardown = app.teardown_request_funcs.setdefault(None, [])
        before_count, teardown_count = len(before), len(teardown)
        FlaskInstrumentor.instrument_app(
            app,
            request_hook=_note_trace_id,
            response_hook=_without_query,
            tracer_provider=self.provider,
            enable_commenter=False,
        )
        # It appends its hooks; the request's span must start before every other before-request hook
        # (the limiter's round trip, an early cache answer) and end after every teardown (Flask runs
        # teardown functions last-registered first).
        for hooks, count in ((before, before_count), (teardown, teardown_count)):
            added = hooks[count:]
            del hooks[count:]
            hooks[0:0] = added
        _trace_statements(app.extensions["db"], self)

    def child(self, name: str, kind: str, attributes: Mapping[str, Any] | None, ok: tuple) -> Any:
        if not self.current_span().is_recording():
            return NO_SPAN  # outside a request, or one not sampled
        return _Active(self, self.tracer.start_span(name, kind=self.kinds[kind], attributes=attributes), ok)

    def with_context(self, headers: dict[str, str]) -> dict[str, str]:
        carrier = dict(headers)
        self._inject(carrier)
        return carrier

    def fail(self, span: Any, exc: BaseException) -> None:
        span.set_status(self._error)
        span.set_attribute("error.type", _error_type(exc))
        span.record_exception(exc)

    def shutdown(self) -> None:
        """Export what is queued and stop the processor's thread, waiting at most FLUSH_TIMEOUT_MS:
        past that (a collector that does not answer) the rest is dropped with the process."""
        atexit.unregister(self.shutdown)
        logging.getLogger("appfactory.access").removeFilter(self._log_filter)
        # The processor's own shutdown waits up to the exporter's timeout and retries (10 s by default).
        stopping = threading.Thread(target=self.processor.shutdown, name="otel-shutdown", daemon=True)
        stopping.start()
        stopping.join(FLUSH_TIMEOUT_MS / 1000)
        if stopping.is_alive():
            log.warning("Spans not exported within %d ms at shutdown were dropped", FLUSH_TIMEOUT_MS)


class _Active:
    """A started span made current for a `with` block (a class: cheaper than a generator's)."""

    __slots__ = ("state", "span", "ok", "token")

    def __init__(self, state: _Tracing, span: Any, ok: tuple) -> None:
        self.state, self.span, self.ok = state, span, ok

    def __enter__(self) -> Any:
        self.token = self.state._attach(self.state._in_context(self.span))
        return self.span

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is not None and not isinstance(exc, self.ok) and getattr(exc, "status", 500) >= 500:
                self.state.fail(self.span, exc)
        finally:
            self.state._detach(self.token)
            self.span.end()


class _Streamed(_Active):
    """A streamed model call's span: its `with` block makes it current, `end` ends it."""

    __slots__ = ("ended",)

    def __init__(self, state: _Tracing, span: Any) -> None:
        super().__init__(state, span, ())
        self.ended = False

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        self.state._detach(self.token)
        if exc is not None:
            self.end(exc)

    def end(self, error: BaseException | None = None, usage: tuple[int, int] | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if (
            error is not None
            and not isinstance(error, GeneratorExit)
            and getattr(error, "status", 500) >= 500
        ):
            self.state.fail(self.span, error)
        if usage is not None:
            self.span.set_attribute("gen_ai.usage.input_tokens", usage[0])
            self.span.set_attribute("gen_ai.usage.output_tokens", usage[1])
        self.span.end()


def _error_type(exc: BaseException) -> str:
    """What failed, in words an operator filters on: the model server's failure kind, the API's error
    code, else the exception's class."""
    return getattr(exc, "kind", None) or getattr(exc, "code", None) or type(exc).__qualname__


def _note_trace_id(span: Any, environ: dict[str, Any]) -> None:
    """The request span's trace id, for web/hooks.start (a request id the caller did not send)."""
    span_context = span.get_span_context()
    if span_context.is_valid:
        environ[TRACE_ID_KEY] = f"{span_context.trace_id:032x}"


def _without_query(span: Any, status: str, headers: Any) -> None:
    """The query string (a GET's prompt) stays out of the trace, as it stays out of the log line."""
    attributes = getattr(span, "attributes", None)
    if not attributes or not span.is_recording():
        return
    for key in ("http.target", "http.url"):  # the instrumentation's default conventions
        if "?" in str(attributes.get(key, "")):
            span.set_attribute(key, attributes[key].split("?", 1)[0])
    if "url.query" in attributes:  # OTEL_SEMCONV_STABILITY_OPT_IN=http
        span.set_attribute("url.query", "")


class _TraceIdFilter(logging.Filter):
    """Adds `trace_id` to the request line (and the slow-request warning) of a recorded request."""

    def __init__(self, current_span: Any) -> None:
        super().__init__()
        self.current_span = current_span

    def filter(self, record: logging.LogRecord) -> bool:
        current = self.current_span()
        if current.is_recording():
            fields = record.__dict__.get("_fields") or {}
            record._fields = {**fields, "trace_id": f"{current.get_span_context().trace_id:032x}"}
        return True


def _sampler(name: str, ratio: float) -> Any:
    from opentelemetry.sdk.trace import sampling

    if name.endswith("traceidratio"):
        root = sampling.TraceIdRatioBased(ratio)
    else:
        root = sampling.ALWAYS_ON if name.endswith("always_on") else sampling.ALWAYS_OFF
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def _resource(resource_class: Any, service_name: str | None, version: str) -> Any:
    """service.name from OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES' (the SDK reads those), else
    aigen; service.version is the service's."""
    attributes = {"service.version": version}
    if service_name:
        attributes["service.name"] = service_name
    resource = resource_class.create(attributes)
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(resource_class({"service.name": DEFAULT_SERVICE_NAME}))
    return resource


# The statement's verb and first table: `SELECT templates`, the span's name (db.query.summary's form).
_VERB = re.compile(r"\s*(\w+)")
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?([A-Za-z_]\w*)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def _summary(statement: str) -> tuple[str, str | None]:
    verb = _VERB.match(statement)
    table = _TABLE.search(statement)
    return (verb.group(1).upper() if verb else "SQL"), (table.group(1) if table else None)


def _trace_statements(engine: Any, state: _Tracing) -> None:
    """A client span for each statement a request runs (SQLAlchemy's cursor events on this engine)."""
    from sqlalchemy import event

    url = engine.url
    base: dict[str, Any] = {"db.system.name": engine.dialect.name}
    if url.database:
        base["db.namespace"] = url.database
    if url.host:
        base.update({"server.address": url.host, "server.port": url.port or 5432})

    @event.listens_for(engine, "before_cursor_execute")
    def _started(conn, cursor, statement, parameters, context, executemany) -> None:
        if _state is not state or context is None or not state.current_span().is_recording():
            return
        verb, table = _summary(statement)
        attributes = {**base, "db.operation.name": verb, "db.query.text": statement}
        if table:
            attributes["db.collection.name"] = table
        name = f"{verb} {table}" if table else verb
        context._aigen_span = state.tracer.start_span(name, kind=state.kinds[CLIENT], attributes=attributes)

    @event.listens_for(engine, "after_cursor_execute")
    def _ended(conn, cursor, statement, parameters, context, executemany) -> None:
        if (started := getattr(context, "_aigen_span", None)) is not None:
            context._aigen_span = None
            started.end()

    @event.listens_for(engine, "handle_error")
    def _failed(exception_context) -> None:
        context = exception_context.execution_context
        if (started := getattr(context, "_aigen_span", None)) is not None:
            context._aigen_span = None
            state.fail(started, exception_context.original_exception)
            started.end()
