"""The benchmark: the service and reference apps under one gunicorn configuration, driven by wrk."""
