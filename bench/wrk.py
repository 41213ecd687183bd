"""Drive wrk with report.lua and read back its figures."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("report.lua")


@dataclass(frozen=True)
class Load:
    """How hard wrk pushes: threads, open connections, seconds, per-request timeout."""

    threads: int = 1
    connections: int = 16
    seconds: int = 6
    timeout_s: int = 10


def available() -> bool:
    """Whether wrk is on PATH."""
    return shutil.which("wrk") is not None


def run(
    url: str,
    load: Load,
    unique: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> dict:
    """One wrk run against `url`; `unique` = (nonce, path prefix) makes every request path new;
    `body` makes every request a POST of that JSON."""
    command = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.seconds}s",
        f"--timeout={load.timeout_s}s",
        "-s",
        str(SCRIPT),
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if unique:
        command += ["--", "unique", *unique]
    elif body is not None:
        command += ["--", "post", body]
    done = subprocess.run(command, capture_output=True, text=True, timeout=load.seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return _figures(json.loads(line.removeprefix("BENCH_JSON ")))
    raise RuntimeError(f"wrk printed no figures (exit {done.returncode}): {done.stderr or done.stdout}")


def _figures(raw: dict) -> dict:
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000.0,
        "p90_ms": raw["p90_us"] / 1000.0,
        "p99_ms": raw["p99_us"] / 1000.0,
        "max_ms": raw["max_us"] / 1000.0,
        "non_2xx": errors["status"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    }
