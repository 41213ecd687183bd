"""What runs the app under gunicorn, besides its configuration file (gunicorn.conf.py)."""

# The longest request line gunicorn accepts (its maximum, `limit_request_line`): what bounds a GET's
# prompt. The document (/openapi.json) tells clients; POST takes longer prompts.
REQUEST_LINE_BYTES = 8190
