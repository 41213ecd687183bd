"""A small OpenAI-compatible chat-completions server on 127.0.0.1 that counts its calls."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.services import REDIS_URL


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # a burst of hundreds of calls connects at once (the default is 5)


class FakeModel:
    """Answers POST /v1/chat/completions after `delay` seconds with `status` (200 gives a completion).

    `status` may be a function of (prompt, how many times that prompt was asked before) -> status;
    `headers` go on every answer that is not a 200 (e.g. Retry-After); `usage`, when given, on every
    completion. `counts_tokens`: every completion reports its usage as a real server does, a token a
    word (a stream in its last event, when asked with stream_options.include_usage); `charged` sums
    those reports. `received` holds each call's request headers.
    """

    def __init__(
        self,
        delay: float = 0.0,
        status=200,
        headers: dict | None = None,
        usage: dict | None = None,
        counts_tokens: bool = False,
    ) -> None:
        self.delay = delay
        self.usage = usage
        self.counts_tokens = counts_tokens
        self.charged = 0
        self.received: list[dict[str, str]] = []
        self.status = status
        self.headers = headers or {}
        self.asked: dict[str, int] = {}
        self.calls = 0
        self.disconnects = 0  # streams whose client closed the connection before their end
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a pooled client reuses its connections
            disable_nagle_algorithm = True  # headers and body leave at once, as a real server sends them

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                prompt = (body.get("messages") or [{}])[0].get("content", "")
                with model._lock:
                    model.calls += 1
                    model.bodies.append(body)
                    model.received.append(dict(self.headers))
                    before = model.asked.get(prompt, 0)
                    model.asked[prompt] = before + 1
                if body.get("stream") and self.path == "/v1/chat/completions":
                    return self._stream(
                        body, model.status(prompt, before) if callable(model.status) else model.status
                    )
                time.sleep(model.delay)
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                status = model.status(prompt, before) if callable(model.status) else model.status
                if status != 200:
                    return self._send(status, {"error": {"message": "upstream failed"}}, model.headers)
                answer = f"echo: {body['messages'][0]['content']}"
                completion = {"model": body["model"], "choices": [{"message": {"content": answer}}]}
                usage = model.usage or model._count(body, answer)
                self._send(200, {**completion, "usage": usage} if usage else completion)

            def _stream(self, body: dict, status: int) -> None:
                """Server-sent chat.completion.chunk events, word by word, spread over `delay`;
                a client that closes its connection is counted in `disconnects`."""
                if status != 200:
                    time.sleep(model.delay)
                    return self._send(status, {"error": {"message": "upstream failed"}}, model.headers)
                words = f"echo: {body['messages'][-1]['content']}".split(" ")
                pieces = [word if n == 0 else " " + word for n, word in enumerate(words)]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for n, piece in enumerate(pieces):
                        if n:
                            time.sleep(model.delay / len(pieces))
                        chunk = {
                            "model": body["model"],
                            "choices": [{"index": 0, "delta": {"content": piece}}],
                        }
                        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                        self.wfile.flush()
                    usage = model._count(body, "".join(pieces))
                    if usage and (body.get("stream_options") or {}).get("include_usage"):
                        chunk = {"model": body["model"], "choices": [], "usage": usage}
                        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:
                    with model._lock:
                        model.disconnects += 1
                self.close_connection = True

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def _count(self, body: dict, answer: str) -> dict | None:
        """The usage a counting server reports for this answer (None: it does not count)."""
        if not self.counts_tokens:
            return None
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion = len(answer.split())
        with self._lock:
            self.charged += prompt + completion
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def reset(self) -> None:
        """Forget the calls counted so far."""
        with self._lock:
            self.calls = 0
            self.bodies.clear()
            self.received.clear()

    def __enter__(self) -> FakeModel:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def model_env(database_url: str, namespace: str, model: FakeModel, **extra: object) -> dict[str, str]:
    """The environment of a gunicorn of the service on the machine's Redis, whose model server (model
    `m1`) is `model`; `extra` settings on top."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": namespace,
        "AI_PROVIDER": "openai",
        "AI_BASE_URL": model.url,
        "AI_MODEL": "m1",
        "LOG_LEVEL": "WARNING",
        **{key: str(value) for key, value in extra.items()},
    }
