"""One HTTP request over a connection of its own, so any gunicorn worker may answer it."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit


def fresh(
    url: str,
    method: str,
    path: str,
    body: dict | None = None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one request, sent with `key` as its Bearer key when given."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"Connection": "close", **(headers or {})}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        payload = None
        if body is not None:
            payload, headers["Content-Type"] = json.dumps(body), "application/json"
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, dict(response.getheaders()), (json.loads(raw) if raw else {})
    finally:
        conn.close()
