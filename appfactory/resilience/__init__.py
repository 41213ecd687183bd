"""Resilience: the circuit breaker (Redis, the model server) and the bulkhead (the model server)."""
