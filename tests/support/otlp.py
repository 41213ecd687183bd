"""A small OTLP/HTTP trace receiver on 127.0.0.1: POST /v1/traces (protobuf), spans kept decoded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass
class Span:
    """One received span, its ids as the hex a traceparent carries."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int  # 0 unset, 1 ok, 2 error
    service: str
    start_ns: int
    end_ns: int
    children: list[Span] = field(default_factory=list, repr=False)

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class Collector:
    """Accepts OTLP/HTTP protobuf exports; `spans` holds every span received, in arrival order."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests: list[dict[str, str]] = []  # each export's headers
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    return self._answer(404, b"")
                collector._receive(ExportTraceServiceRequest.FromString(body), dict(self.headers))
                self._answer(200, ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _receive(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        received = []
        for resource_spans in request.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            name=span.name,
                            kind=_KINDS.get(span.kind, "unspecified"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                            events=[(e.name, _attributes(e.attributes)) for e in span.events],
                            status=span.status.code,
                            service=service,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.requests.append(headers)

    def trace(self, trace_id: str) -> list[Span]:
        """The spans received of one trace."""
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(self, trace_id: str, count: int, timeout: float = 10.0) -> list[Span]:
        """The trace's spans once `count` of them arrived (or what arrived within `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.trace(trace_id)
            if len(spans) >= count:
                return spans
            time.sleep(0.05)
        return self.trace(trace_id)

    def reset(self) -> None:
        with self._lock:
            self.spans.clear()
            self.requests.clear()

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def tree(spans: list[Span]) -> list[Span]:
    """The roots of `spans` (spans whose parent is not among them), each with its `children`, in the
    order they started; pass every span of a trace (each span's children are set anew)."""
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        span.children = []
    roots = []
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = by_id.get(span.parent_id)
        (parent.children if parent is not None else roots).append(span)
    return roots


def draw(spans: list[Span], keys: tuple[str, ...] = ()) -> str:
    """The trace as an indented tree: name, kind, duration, and the attributes named in `keys`."""
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        shown = {k: span.attributes[k] for k in keys if k in span.attributes}
        extra = f" {shown}" if shown else ""
        events = f" events={[name for name, _ in span.events]}" if span.events else ""
        lines.append(f"{'  ' * depth}{span.name} [{span.kind}] {span.ms:.2f} ms{extra}{events}")
        for child in span.children:
            walk(child, depth + 1)

    for root in tree(spans):
        walk(root, 0)
    return "\n".join(lines)
