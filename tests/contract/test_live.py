"""The contract on a real gunicorn (PostgreSQL, Redis): schemathesis fuzzes every operation from the
document, headless Chromium renders /docs with no network, and what gunicorn itself refuses is JSON."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.conftest import key_namespace, truncate
from tests.support.gunicorn import Gunicorn
from tests.support.keys import issue_key
from tests.support.services import REDIS_URL, require_redis, unavailable

pytestmark = pytest.mark.slow

# Bounded so the suite stays fast; the seed makes every run generate the same cases.
FUZZ_SEED, FUZZ_EXAMPLES = 1, 25


@pytest.fixture(scope="module")
def server(postgres):
    require_redis()
    env = {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        "CACHE_NAMESPACE": key_namespace(),
        "AI_ALLOW_ANONYMOUS": "false",
        "AI_LOCAL_LATENCY_MS": "0",
        # The fuzzer sends thousands of requests a minute, with keys it invents: budgets out of its way.
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "RATE_LIMIT_SIGNUPS_PER_MINUTE": "1000000",
        "RATE_LIMIT_SIGNUPS_PER_HOUR": "1000000",
        "SIGNUPS_PER_DAY": "1000000",
        "AUTH_FAILURES_PER_MINUTE": "1000000",
    }
    with Gunicorn(env, workers=2) as running:
        yield running
    truncate(postgres.url)


def _operations(server: Gunicorn) -> int:
    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    return sum(len(operations) for operations in document["paths"].values())


def _raw(server: Gunicorn, request: bytes) -> tuple[int, dict[str, str], dict]:
    """Send bytes as they are (no client library would send these) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_the_document_keeps_the_views_prose_under_optimized_workers(server):
    assert server.env["PYTHONOPTIMIZE"] == "2"  # as the image runs them: no docstrings in memory
    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    operation = document["paths"]["/api/v1/ai/generate"]["get"]
    assert operation["summary"] == "Generate text from a prompt in the query string."
    assert "8,190 bytes" in operation["description"]


def test_what_gunicorn_refuses_is_answered_in_the_json_envelope(server):
    prompt = urllib.parse.quote("中" * 1000)  # 9,000 bytes encoded: past any request line
    refusals = {
        414: f"GET /api/v1/ai/generate?prompt={prompt} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        431: b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_240 + b"\r\n\r\n",
        400: b"NOT A REQUEST LINE\r\n\r\n",
    }
    for status, request in refusals.items():
        got, headers, body = _raw(server, request)
        assert got == status
        assert headers["Content-Type"] == "application/json"
        # compact and ending in a newline, as every other body
        assert int(headers["Content-Length"]) == len(json.dumps(body, separators=(",", ":"))) + 1
        assert set(body["error"]) == {"code", "message"}, body
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])
    assert "POST /api/v1/ai/generate" in _raw(server, refusals[414])[2]["error"]["message"]


def test_a_get_prompt_of_the_longest_length_fits_the_request_line(server):
    key = issue_key(server.env["DATABASE_URL"])
    prompt = urllib.parse.quote("ab" * 2000)  # MAX_PROMPT_CHARS (4,000) ASCII characters
    request = (
        f"GET /api/v1/ai/generate?prompt={prompt} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    status, _, body = _raw(server, request.encode())
    assert status == 200 and len(body["prompt"]) == 4000


def test_schemathesis_finds_no_failure_in_any_operation(server, tmp_path, capsys):
    key = issue_key(server.env["DATABASE_URL"])
    report = tmp_path / "report.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        f"--config-file={Path(__file__).with_name('schemathesis.toml')}",
        "run",
        f"{server.url}/openapi.json",
        "--checks=all",
        f"--seed={FUZZ_SEED}",
        f"--max-examples={FUZZ_EXAMPLES}",
        f"--header=Authorization: Bearer {key}",
        f"--report-json-path={report}",
        "--report=json",
        "--no-color",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    summary = run.stdout[run.stdout.find("SUMMARY") :]
    cases = re.search(r"(\d+) generated, (.*)", summary)
    outcome = cases.group(0) if cases else "?"
    with capsys.disabled():  # in the suite's output, not only on failure
        print(f"\nschemathesis (seed {FUZZ_SEED}, {FUZZ_EXAMPLES} examples a phase): {outcome}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert cases and int(cases.group(1)) > 500, summary
    assert "No issues found" in run.stdout
    operations = _operations(server) - 1  # schemathesis leaves out the operation serving the document
    assert f"Selected: {operations}/{operations}" in summary and f"Tested: {operations}" in summary, summary


def test_the_docs_page_renders_in_headless_chromium_without_network(server, tmp_path, capsys):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        unavailable("chromium is not installed (Debian: apt-get install chromium)")
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        # Any host but this machine fails to resolve: what renders comes from the service alone.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000",  # lets the page's scripts fetch /openapi.json and render it
        "--dump-dom",
        f"{server.url}/docs/",
    ]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    dom = run.stdout
    operations = re.findall(r'class="opblock opblock-(get|post|put|patch|delete)', dom)
    with capsys.disabled():
        print(f"\nchromium rendered {len(operations)} operations from /docs/")
    assert len(operations) == _operations(server), (run.returncode, run.stderr[-3000:], dom[:3000])
    assert "/api/v1/ai/generate" in dom
    assert "aigen" in dom  # the document's title, so the page read the document
