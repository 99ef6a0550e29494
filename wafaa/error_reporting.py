"""Unexpected errors to Sentry, when SENTRY_DSN is set (off by default).

The log line of a 500 names the exception's type and place only; Sentry gets the
traceback, which is what it is for, but nothing it could leak: every event goes
through `scrub` before it leaves the process. Removed: the request's body,
cookies, query string and every header but a few harmless ones; values under
names that suggest a secret (password, token, secret, authorization, hash,
cookie, key); and, anywhere in the event (messages, local variables, breadcrumbs),
query strings and strings that look like a JWT, a bcrypt hash or an email address. No personal data
is sent (the SDK's default), and no performance traces.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, current_app

from wafaa.logging import MASK, SECRET_NAME

# The log's secret names, and a few more an error's variables hold (an API key,
# the DSN itself, a session).
_SECRET_NAME = re.compile(SECRET_NAME.pattern + r"|key|dsn|session", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
_BCRYPT = re.compile(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}")
_EMAIL = re.compile(r"[^\s@\"'<>]+@[^\s@\"'<>]+\.[A-Za-z]{2,}")
# A URL's query string, wherever a URL shows (the repr of a request among a
# frame's variables): it may carry a token or an email.
_QUERY = re.compile(r"\?[^\s'\"<>]*=[^\s'\"<>]*")
_KEPT_HEADERS = {"content-type", "content-length", "user-agent", "x-request-id", "host"}


def _scrub_text(text: str) -> str:
    text = _QUERY.sub("?[query]", text)
    text = _JWT.sub("[token]", text)
    text = _BCRYPT.sub("[hash]", text)
    return _EMAIL.sub("[email]", text)


def _scrub(value: Any, name: str = "") -> Any:
    if name and _SECRET_NAME.search(name):
        return MASK
    if isinstance(value, dict):
        return {key: _scrub(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, str):
        return _scrub_text(value)
    return value


def scrub(event: dict, hint: dict | None = None) -> dict:
    """Sentry's before_send (and before_breadcrumb): the event without secrets."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        request.pop("query_string", None)
        headers = request.get("headers") or {}
        request["headers"] = {k: v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
    event.pop("user", None)
    return _scrub(event)


def init_app(app: Flask, **options: Any) -> None:
    """`options` go to sentry_sdk.init after the app's own (tests give a transport)."""
    dsn = app.config.get("SENTRY_DSN")
    if not dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        # Log lines become breadcrumbs only: the 500's own event comes from
        # report(), once, not a second time from its log line.
        integrations=[LoggingIntegration(event_level=None)],
        environment=app.config["ENV_NAME"],
        release=app.config["APP_VERSION"],
        traces_sample_rate=0,
        auto_session_tracking=False,  # errors only, no release-health traffic per request
        max_request_body_size="never",
        before_send=scrub,
        before_breadcrumb=scrub,
        **options,
    )
    app.extensions["wafaa_sentry"] = True


def report(error: BaseException) -> None:
    """An unexpected error, to Sentry when this app turned it on. The app's own
    error handler answers every exception, so Sentry's Flask hook never sees one."""
    if current_app.extensions.get("wafaa_sentry"):
        import sentry_sdk

        sentry_sdk.capture_exception(error)
