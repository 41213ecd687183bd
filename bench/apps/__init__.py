"""Reference apps served next to the service, with the same gunicorn configuration."""
