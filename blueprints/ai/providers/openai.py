"""The `openai` provider: any OpenAI-compatible chat-completions server, with retries.

Transient failures (a refused connection, 429, 502, 503, 504) are retried with exponential backoff
and jitter, honouring the server's Retry-After, as urllib3's `Retry` policy decides; the loop here
only adds the overall deadline (AI_TIMEOUT_S from the first attempt), which `Retry` cannot know.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from appfactory.observability import tracing
from blueprints.ai.providers.base import Chat, Completion, UpstreamError, Usage

log = logging.getLogger(__name__)

TRANSIENT = (429, 502, 503, 504)
BACKOFF_S = 0.25  # first pause; then 0.5, 1, ... with up to BACKOFF_S of jitter
BACKOFF_MAX_S = 4.0


class OpenAIProvider:
    """POST {base_url}/chat/completions over one connection pool per process."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str | None,
        timeout_s: float,
        pool: int,
        retries: int = 2,
    ) -> None:
        self.upstream = base_url.rstrip("/")  # in the cache key: another server's answers are not ours
        self.url = self.upstream + "/chat/completions"
        self.default_model = model or "default"
        self.timeout_s = timeout_s
        self.connect_s = min(timeout_s, 5.0)
        self.retry = Retry(
            total=retries,
            connect=retries,
            read=0,  # a server that took the request and went silent is not asked again
            status=retries,
            other=0,
            allowed_methods=frozenset({"POST"}),
            status_forcelist=TRANSIENT,
            backoff_factor=BACKOFF_S,
            backoff_jitter=BACKOFF_S,
            backoff_max=BACKOFF_MAX_S,
            respect_retry_after_header=True,
            retry_after_max=timeout_s,
            raise_on_status=False,
        )
        self.pool = urllib3.PoolManager(maxsize=pool, block=False, retries=False)
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def complete(self, prompt: str, model: str, max_tokens: int, temperature: float) -> Completion:
        payload = json.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": temperature,
            }
        ).encode()
        response = self._post(payload)
        if response.status != 200:
            raise _refused(response, model)
        return _content(response)

    def stream(self, chat: Chat) -> Iterator[str | Usage]:
        """POST with `stream: true`; yields each `choices[0].delta.content` as its event arrives, then
        the usage the server reports in its last event (asked for with `stream_options`).
        Closing the iterator early closes the connection, so the model server stops generating."""
        body = {**chat.payload(), "stream": True, "stream_options": {"include_usage": True}}
        payload = json.dumps(body).encode()
        response = self._post(payload, stream=True)
        finished = False
        try:
            if response.status != 200:
                response.read()
                raise _refused(response, chat.model)
            for line in _lines(response):
                event = _event(line)
                if event is _DONE:
                    break
                if event:
                    yield event
            finished = True
        except ReadTimeoutError:
            raise UpstreamError("timeout", 504, "The model server stopped sending in time.") from None
        except (ProtocolError, HTTPError):
            raise UpstreamError("bad_answer", 502, "The model server broke off its answer.") from None
        finally:
            if finished:
                response.release_conn()
            else:
                response.close()  # the model server sees its connection closed and stops

    def _post(self, payload: bytes, stream: bool = False) -> urllib3.BaseHTTPResponse:
        deadline = time.monotonic() + self.timeout_s
        retry = self.retry
        headers = tracing.outgoing_headers(self.headers)  # traceparent: the model call's span
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamError("timeout", 504, "The model server did not answer in time.")
            error: Exception | None = None
            response = None
            try:
                response = self.pool.request(
                    "POST",
                    self.url,
                    body=payload,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=min(self.connect_s, remaining), read=remaining),
                    retries=False,
                    preload_content=not stream,
                )
            except ReadTimeoutError:
                raise UpstreamError("timeout", 504, "The model server did not answer in time.") from None
            except HTTPError as exc:  # refused, reset, unresolvable: worth another try
                error = exc
            if response is not None and not retry.is_retry(
                "POST", response.status, "Retry-After" in response.headers
            ):
                return response
            try:
                retry = retry.increment("POST", self.url, response=response, error=error)
            except MaxRetryError:
                return _last_answer(response, error)
            if response is not None and stream:
                response.drain_conn()  # asked again: this answer's connection goes back to the pool
            pause = (
                retry.get_retry_after(response) if response is not None else None
            ) or retry.get_backoff_time()
            if time.monotonic() + pause >= deadline:
                return _last_answer(response, error)
            reason = str(response.status) if response is not None else type(error).__name__
            tracing.event("retry", {"aigen.retry.reason": reason, "aigen.retry.pause_s": round(pause, 3)})
            time.sleep(pause)


_DONE = object()


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The lines of a server-sent event stream, as they arrive."""
    pending = b""
    while block := response.read1(4096):  # what has arrived, not a full 4 KiB: each event at once
        pending += block
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def _event(line: bytes) -> object:
    """The text of one `data:` line of a chat.completion.chunk stream, or the Usage of its usage
    chunk; _DONE at its end."""
    line = line.strip()
    if not line.startswith(b"data:"):
        return None  # blank separators, comments, other fields
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    if not isinstance(chunk, dict):
        return None
    if (usage := _usage(chunk.get("usage"))) is not None:
        return usage
    try:
        choice = chunk["choices"][0]
    except (KeyError, IndexError, TypeError):
        return None
    content = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
    return content if isinstance(content, str) else None


def _usage(reported: object) -> Usage | None:
    """The model server's usage figures, when it sent whole numbers for them."""
    if not isinstance(reported, dict):
        return None
    prompt, completion = reported.get("prompt_tokens"), reported.get("completion_tokens")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (prompt, completion)):
        return None
    return Usage(prompt, completion)


def _last_answer(
    response: urllib3.BaseHTTPResponse | None, error: Exception | None
) -> urllib3.BaseHTTPResponse:
    """Out of attempts or time: the last answer (told apart by _refused), or unreachable."""
    if response is not None:
        return response
    log.warning("Model server unreachable: %s", type(error).__name__)
    raise UpstreamError("unreachable", 502, "The model server could not be reached.")


def _refused(response: urllib3.BaseHTTPResponse, model: str) -> UpstreamError:
    """The error for a non-200 answer, by kind; Retry-After where trying later can help."""
    status = response.status
    retry_after = _retry_after(response)
    if status in (401, 403):
        return UpstreamError("authentication", 502, "The model server refused the service's credentials.")
    if status == 404:
        return UpstreamError("unknown_model", 502, f"The model server does not serve model {model!r}.")
    if status == 429:
        return UpstreamError(
            "throttled",
            503,
            "The model server is throttling requests; retry later.",
            "upstream_busy",
            retry_after=retry_after or 5,
        )
    if status == 503:
        return UpstreamError(
            "overloaded",
            503,
            "The model server is overloaded; retry later.",
            "upstream_unavailable",
            retry_after=retry_after or 5,
        )
    if status >= 500:
        return UpstreamError("server_error", 502, f"The model server failed ({status}).")
    return UpstreamError("rejected", 502, f"The model server refused the request ({status}).")


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(1.0, float(value))
    except ValueError:
        return None


def _content(response: urllib3.BaseHTTPResponse) -> Completion:
    try:
        answer = json.loads(response.data)
        text = answer["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        raise UpstreamError(
            "bad_answer", 502, "The model server sent an answer that is not a chat completion."
        )
    return Completion(text, _usage(answer.get("usage")))
