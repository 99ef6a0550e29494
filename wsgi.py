"""WSGI entry point: `gunicorn wsgi:app` (see gunicorn.conf.py).

APP_ENV picks the configuration and defaults to production, whose checks refuse
to start with missing or weak secrets.
"""

from wafaa import create_app

app = create_app()
