"""The web layer: the Flask class and JSON provider, errors, request validation, request hooks."""
