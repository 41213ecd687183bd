"""Observability: JSON logs, the standard streams routed into them, Prometheus metrics, Server-Timing."""
