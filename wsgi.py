"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, and `flask --app wsgi ...`."""

import sys

from appfactory import create_app
from appfactory.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One line per bad variable and exit 1: a traceback would only bury the names.
    print("\n".join(exc.lines()), file=sys.stderr)
    sys.exit(1)
