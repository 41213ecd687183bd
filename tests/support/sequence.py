"""`python -m tests.support.sequence DATABASE_URL NAMESPACE`: one sequence of requests, as JSON.

Run once as is and once with AIGEN_COMPAT_PUBLIC=all (the libraries' public ways, chosen at import,
hence a process each): tests/compat/test_public_ways.py compares what the two answered.
"""

from __future__ import annotations

import json
import re
import sys

from appfactory import create_app
from appfactory.db import migrate
from tests.support.keys import bearer, issue_key
from tests.support.services import REDIS_URL

HEADERS = (
    "X-Cache",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "RateLimit-Policy",
    "Retry-After",
    "WWW-Authenticate",
)
VOLATILE = ("generated_at", "created_at", "updated_at")

REQUESTS = [
    ("GET", "/api/v1/ai/generate?prompt=tea", None),
    ("GET", "/api/v1/ai/generate?prompt=tea", None),
    ("GET", "/api/v1/ai/generate?prompt=tea&max_tokens=nope", None),
    ("POST", "/api/v1/templates", {"name": "t", "body": "Hi {{ who }}"}),
    ("GET", "/api/v1/templates", None),
    ("GET", "/api/v1/templates", None),
    ("GET", "/api/v1/templates/1", None),
    ("GET", "/api/v1/nowhere", None),
    ("GET", "/api/v1/templates", None),  # the 9th: over the limit of 8
    ("GET", "/health/live", None),
    ("REVOKE", "", None),  # the key is revoked: refused from the next request
    ("GET", "/api/v1/ai/generate?prompt=tea", None),
]


def _shown(response) -> dict:
    body = response.get_json(silent=True)
    retry_in = None
    if isinstance(body, dict) and "error" in body:  # seconds to wait: each way reads its own clock
        message = body["error"]["message"]
        if (found := re.search(r"retry in (\d+) s", message)) is not None:
            retry_in = int(found.group(1))
            body["error"]["message"] = message.replace(found.group(0), "retry in N s")
    if isinstance(body, dict):
        body = {key: value for key, value in body.items() if key not in VOLATILE}
        if isinstance(body.get("items"), list):
            body["items"] = [{k: v for k, v in item.items() if k not in VOLATILE} for item in body["items"]]
    headers = {name: response.headers.get(name) for name in HEADERS}
    headers["Retry-After"] = headers["Retry-After"] is not None
    return {"status": response.status_code, "body": body, "headers": headers, "retry_in": retry_in}


def main(database_url: str, namespace: str) -> None:
    migrate.upgrade(database_url)
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "CACHE_NAMESPACE": namespace,
            "RATE_LIMIT_PER_MINUTE": 8,
            "AI_LOCAL_LATENCY_MS": 0,
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": 1,
            "AI_ALLOW_ANONYMOUS": False,
        }
    )
    client = app.test_client()
    token = issue_key(database_url, admin=False)
    answers = []
    for method, path, body in REQUESTS:
        if method == "REVOKE":
            assert app.test_cli_runner().invoke(args=["keys", "revoke", token.split("_")[1]]).exit_code == 0
            continue
        answers.append(_shown(client.open(path, method=method, json=body, headers=bearer(token))))
    app.extensions["response_cache"].counters.flush()
    print(json.dumps(answers))


if __name__ == "__main__":
    main(*sys.argv[1:3])
