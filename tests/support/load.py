"""A bounded load on a local server: a few client threads, each sending a mix of requests with a
pause between them, every answer recorded with its time, so a test can cut the run into phases."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# What the clients send, in turn: (method, path, body); "{name}" becomes a unique template name.
MIX = [
    ("GET", "/api/v1/ai/generate?prompt=load-hit", None),  # cached: needs only Redis
    ("GET", "/api/v1/templates/{template_id}", None),  # the database
    ("GET", "/api/v1/templates?limit=5", None),  # cached in Redis, emptied by every write
    ("GET", "/health/live", None),  # no dependency
    ("POST", "/api/v1/templates", {"name": "{name}", "body": "load"}),  # a write
]
NEEDS_DATABASE = ("/api/v1/templates",)


@dataclass
class Answer:
    started: float
    took: float
    method: str
    path: str
    status: int | None  # None: no answer (connection refused, reset, timed out)
    code: str | None = None  # the error envelope's code
    json: bool = True
    name: str | None = None  # the template a write sent


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    prefix: str = ""

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def between(self, start: str | None, end: str | None) -> list[Answer]:
        low = self.marks[start] if start else float("-inf")
        high = self.marks[end] if end else float("inf")
        return [a for a in self.answers if low <= a.started < high]

    def acknowledged_writes(self) -> set[str]:
        return {a.name for a in self.answers if a.method == "POST" and a.status == 201 and a.name}

    def sent_writes(self) -> set[str]:
        return {a.name for a in self.answers if a.method == "POST" and a.name}


def classes(answers: list[Answer]) -> dict[str, int]:
    """Answers by status class: 2xx, 4xx, 5xx, and none (no answer)."""
    counts: dict[str, int] = {}
    for answer in answers:
        key = "none" if answer.status is None else f"{answer.status // 100}xx"
        counts[key] = counts.get(key, 0) + 1
    return counts


def p99_ms(answers: list[Answer]) -> float | None:
    times = sorted(a.took * 1000 for a in answers)
    if not times:
        return None
    return times[min(len(times) - 1, int(len(times) * 0.99))]


def median_ms(answers: list[Answer]) -> float | None:
    return statistics.median(a.took * 1000 for a in answers) if answers else None


class Load:
    """`clients` threads against `url` until stopped; `fresh=True`: a new connection per request."""

    def __init__(
        self,
        url: str,
        template_id: int,
        clients: int = 4,
        pause_s: float = 0.02,
        fresh: bool = False,
        timeout_s: float = 15.0,
        mix: list | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.template_id = template_id
        self.clients, self.pause_s, self.fresh, self.timeout_s = clients, pause_s, fresh, timeout_s
        self.mix = mix or MIX
        self.headers = headers or {}
        self.prefix = f"load-{uuid.uuid4().hex[:6]}-"  # names this run's writes
        self.run = Run(prefix=self.prefix)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)

    def _client(self, n: int) -> None:
        conn: http.client.HTTPConnection | None = None
        turn = n
        while not self._stop.is_set():
            method, path, body = self.mix[turn % len(self.mix)]
            turn += 1
            path = path.format(template_id=self.template_id)
            name = None
            if body is not None and "{name}" in body.get("name", ""):
                name = f"{self.prefix}{uuid.uuid4().hex[:12]}"
                body = {**body, "name": name}
            if conn is None or self.fresh:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            answer, keep = self._send(conn, method, path, body, name)
            if not keep or self.fresh:
                conn.close()
                conn = None
            with self._lock:
                self.run.answers.append(answer)
            self._stop.wait(self.pause_s)
        if conn is not None:
            conn.close()

    def _send(self, conn, method: str, path: str, body: dict | None, name: str | None) -> tuple[Answer, bool]:
        headers = {**self.headers, **({"Connection": "close"} if self.fresh else {})}
        payload = None
        if body is not None:
            payload, headers["Content-Type"] = json.dumps(body), "application/json"
        started = time.monotonic()
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            return Answer(started, time.monotonic() - started, method, path, None, name=name), False
        took = time.monotonic() - started
        code, is_json = None, response.getheader("Content-Type", "").startswith("application/json")
        if response.status >= 400:
            try:
                code = json.loads(raw)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                is_json = False
        keep = not response.will_close
        return Answer(started, took, method, path, response.status, code, is_json, name), keep
