"""Redis: the client with its short timeouts, and the circuit breaker around it."""
