"""Reading the service's response headers in tests."""

from __future__ import annotations


def server_timing(response) -> dict[str, float]:
    """`Server-Timing: db;dur=1.20, app;dur=3.40` → {"db": 1.2, "app": 3.4}."""
    pairs = (part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(","))
    return {name: float(ms) for name, ms in pairs}
