"""WSGI entry point: `gunicorn wsgi:app` (see gunicorn.conf.py).

APP_ENV picks the configuration and defaults to production, whose checks refuse
to start with missing or weak secrets.
"""

import sys

from config import ConfigError
from wafaa import create_app

try:
    app = create_app()
except ConfigError as error:
    # One line that says what to fix, for the flask command and gunicorn alike,
    # instead of a traceback through the app factory.
    sys.stderr.write(f"Error: configuration: {error}\n")
    raise SystemExit(1) from None
