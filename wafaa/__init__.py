"""Wafaa AI Concierge backend: the application factory."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, config_class_from_env


def create_app(config_class: type[Config] | None = None) -> Flask:
    """Build the app: config, logging, extensions, blueprints, error handlers, CLI."""
    from wafaa import (
        admission,
        audit,
        cli,
        cors,
        db_pool,
        docs,
        error_reporting,
        errors,
        http_guards,
        metrics,
        openapi,
        passwords,
        registrations,
        security,
        tenancy,
        tracing,
        unit_of_work,
    )
    from wafaa import logging as wafaa_logging
    from wafaa.api import register as register_blueprints
    from wafaa.app_class import WafaaFlask
    from wafaa.extensions import api, db, jwt, migrate
    from wafaa.ratelimit import init_app as init_ratelimit

    config = (config_class or config_class_from_env())()
    app = WafaaFlask(__name__, static_folder=None)
    app.config.from_object(config)
    app.config["ENV_NAME"] = config.ENV_NAME
    # Routing never redirects: Werkzeug would answer `//api` or a trailing slash
    # with a 308 to an absolute URL built from the Host header, and a client that
    # follows it sends its credentials to whatever host the request named.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    if app.config["TRUSTED_PROXY_COUNT"]:
        # Believe X-Forwarded-For only as far as our own proxies wrote it.
        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)

    wafaa_logging.init_app(app)  # first: every later hook can log with the request id
    error_reporting.init_app(app)
    tracing.init_app(app)  # after logging: its filter goes on the log handler
    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()))
    jwt.init_app(app)
    cors.init_app(app)
    api.init_app(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.components.security_scheme(
        "refreshToken",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The refresh token (POST /api/v1/auth/refresh only), in the header, or in the body "
            "when the request sends no Authorization header",
        },
    )
    # The same access token, got by logging in: Swagger UI's Authorize dialog
    # asks for the email (as username) and password and posts them to tokenUrl.
    api.spec.components.security_scheme(
        "oauth2Password",
        {
            "type": "oauth2",
            "description": "Log in with your email as the username and your password; "
            "the client id and secret are not used",
            "flows": {"password": {"tokenUrl": "/api/v1/auth/token", "scopes": {}}},
        },
    )
    db_pool.init_app(app)
    metrics.init_app(app)
    passwords.init_app(app)
    tenancy.init_app(app)
    registrations.init_app(app)  # after tenancy: a new admin's tenant is stamped
    audit.init_app(app)  # after tenancy: its flush listener sees stamped tenant ids
    unit_of_work.init_app(app)
    http_guards.init_app(app)
    security.init_app(app)  # after http_guards: a bad body is refused before any token work
    errors.init_app(app)  # after api.init_app: replaces flask-smorest's error handler
    register_blueprints(api)
    openapi.init_app(app, api)  # after the blueprints: completes what they registered
    init_ratelimit(app)  # after the blueprints and security: limits wrap views, need the identity
    docs.init_app(app)
    cli.init_app(app)
    admission.init_app(app)  # last: the outermost middleware
    return app


def _migrations_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"
