"""Sentry, when SENTRY_DSN is set: every unexpected error reaches it, and nothing
secret does. The SDK runs for real; its transport is an in-process capture, so
nothing leaves the process (the DSN names a closed port of 127.0.0.1)."""

from __future__ import annotations

import json

import sentry_sdk
from sentry_sdk.transport import Transport

from wafaa import error_reporting
from wafaa.security import PUBLIC, requires

DSN = "http://public@127.0.0.1:9/1"
EMAIL = "victim.owner@acme.example.com"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWEtdG9rZW4"
HASH = "$2b$12$" + "a" * 53
# Not hex: a cookie like "abc" was found inside the event's random hex ids now and then.
COOKIE = "-".join(["cookie", "value", "xyz"])  # not in the source Sentry quotes


class Captured(Transport):
    def __init__(self) -> None:
        super().__init__({"dsn": DSN})
        self.events: list[dict] = []

    def capture_envelope(self, envelope) -> None:
        for item in envelope.items:
            if item.type == "event":
                self.events.append(item.payload.json)


def test_an_unexpected_error_reaches_sentry_scrubbed(make_app):
    app = make_app()
    app.config["SENTRY_DSN"] = DSN  # as SENTRY_DSN would; with the capture as the only transport
    captured = Captured()
    error_reporting.init_app(app, transport=captured)

    @requires(PUBLIC)
    def explode():
        # A local variable Sentry would show; made at run time, so that the source
        # lines Sentry sends as context do not hold it.
        password = "-".join(["the", "users", "password", "123"])  # noqa: F841
        raise RuntimeError(f"lookup failed for {EMAIL} with {TOKEN} and {HASH}")

    app.add_url_rule("/explode", "explode", explode, methods=["POST"])
    try:
        response = app.test_client().post(
            "/explode?token=" + "-".join(["secret", "in", "query"]),  # not in the source Sentry quotes
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Cookie": f"session={COOKIE}",
                "Content-Type": "application/json",
            },
            data=json.dumps({"password": "body-password-123"}),
        )
        sentry_sdk.flush()
    finally:
        sentry_sdk.init(dsn=None)  # nowhere to send, for the rest of the suite
    assert response.status_code == 500
    assert len(captured.events) == 1
    event = captured.events[0]
    text = json.dumps(event)
    assert "RuntimeError" in text and "explode" in text  # the traceback is there
    for secret in (EMAIL, TOKEN, HASH, "the-users-password-123", "body-password-123", "secret-in-query", COOKIE):
        assert secret not in text, secret
    assert "[email]" in text and "[token]" in text


def test_off_without_a_dsn(make_app):
    app = make_app()
    assert "wafaa_sentry" not in app.extensions
