"""Rate limits (flask-limiter): login per client IP and per account, refresh per IP,
every authenticated endpoint per admin. All of the service's limits are here.

Counters live in RATELIMIT_STORAGE_URI: `memory://` for one process, Redis
wherever more than one worker or host serves. If the storage cannot be reached
the limited request is refused with 503 (wafaa.errors) rather than let through
unlimited: an outage of the limiter must not become an open door for password
guessing.

Each app gets its own Limiter (flask-limiter keeps its storage on the instance, so
one shared instance would make every app use the last one's storage); the route
limits are applied to the registered views here, not with decorators at import.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter
from limits import parse_many

from wafaa import audit
from wafaa.errors import TooManyRequests
from wafaa.models.admin import normalize_email


def client_ip() -> str:
    """The per-address key: the client's IPv4 address or IPv6 network
    (wafaa.audit.client_source). X-Forwarded-For counts only when
    TRUSTED_PROXY_COUNT > 0 (ProxyFix in create_app): a spoofed header cannot buy
    a fresh bucket."""
    return audit.client_source()


def admin_key() -> str:
    identity = g.get("identity")
    # flask-limiter builds the key before it asks whether the limit is exempt.
    return f"admin:{identity.admin.id}" if identity is not None else f"anonymous:{client_ip()}"


def login_account_key() -> str:
    """The account a login names, from this source, as a keyed hash: no email
    address lands in Redis, and a dictionary of hashed emails cannot reverse the
    keys. Per source, not per account alone: a limit on the account from
    anywhere would let anyone lock its owner out by spending it."""
    if request.endpoint == "auth.Token":  # the same login, form-encoded (RFC 6749)
        email = request.form.get("username")
    else:
        body = request.get_json(silent=True)
        email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str):
        return f"account-unnamed:{client_ip()}"
    key = current_app.config["SECRET_KEY"].encode("utf-8")
    # surrogatepass: an email the schema will refuse still gets a bucket, not a 500.
    message = f"{normalize_email(email)}\n{client_ip()}".encode("utf-8", "surrogatepass")
    return f"account:{hmac.new(key, message, hashlib.sha256).hexdigest()[:32]}"


# The global budget of failed logins (RATELIMIT_LOGIN_FAILURES), kept in the
# limiter's storage so that every worker and host shares it.
_FAILURES_KEY = ("wafaa", "login-failures")


def _failure_limits() -> list:
    return parse_many(current_app.config["RATELIMIT_LOGIN_FAILURES"])


def check_login_failure_budget() -> None:
    """429 before any password work once the service has seen its budget of
    failed logins for the window."""
    if not current_app.config["RATELIMIT_ENABLED"]:
        return
    strategy = current_limiter().limiter
    for item in _failure_limits():
        if not strategy.test(item, *_FAILURES_KEY):
            reset = strategy.get_window_stats(item, *_FAILURES_KEY).reset_time
            raise TooManyRequests(
                "Too many failed logins on this service just now. Retry later.",
                retry_after=int(reset - time.time()) + 1,
            )


def count_login_failure() -> None:
    if current_app.config["RATELIMIT_ENABLED"]:
        strategy = current_limiter().limiter
        for item in _failure_limits():
            strategy.hit(item, *_FAILURES_KEY)


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


_LOGIN_LIMITS = [
    ("RATELIMIT_LOGIN_PER_IP", client_ip, "login-ip"),
    ("RATELIMIT_LOGIN_PER_ACCOUNT", login_account_key, "login-account"),
]
# endpoint -> [(limit setting, key, scope)]. A scope is one bucket wherever it
# is applied: the JSON login and the OAuth token endpoint spend the same budget,
# so a second door to the login is not a second allowance of guesses.
ROUTE_LIMITS = {
    "auth.Login": _LOGIN_LIMITS,
    "auth.Token": _LOGIN_LIMITS,
    "auth.Refresh": [("RATELIMIT_REFRESH_PER_IP", client_ip, "refresh-ip")],
}

# Probes and documentation are never limited: a load balancer's health checks must
# not depend on the limiter's storage, nor eat into anyone's budget.
UNLIMITED_ENDPOINTS = frozenset({"system.health", "system.livez", "system.readyz", "system.info"})
UNLIMITED_BLUEPRINTS = frozenset({"api-docs", "docs-assets"})


def _unlimited() -> bool:
    return (
        request.endpoint is None  # no such route: a 404 (or 405) costs nothing
        or request.endpoint in UNLIMITED_ENDPOINTS
        or request.blueprint in UNLIMITED_BLUEPRINTS
    )


def current_limiter() -> Limiter:
    return current_app.extensions["wafaa_limiter"]


def storage_check() -> dict | None:
    """Health of a shared (Redis) counter storage; None for in-process memory."""
    if current_app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        return None
    try:
        healthy = current_limiter().storage.check()
    except Exception:  # any storage failure means the same thing here
        healthy = False
    return {"status": "ok" if healthy else "unavailable"}


def _reset_in_seconds(response: Response) -> Response:
    """flask-limiter sends `RateLimit-Reset` as a Unix time; the IETF draft, and
    the clients that follow it, read seconds until the window resets (a Unix time
    read as seconds is decades)."""
    value = response.headers.get("RateLimit-Reset", "")
    if value.isdigit() and int(value) > 1_000_000_000:  # a Unix time, not already a delay
        response.headers["RateLimit-Reset"] = str(max(0, int(value) - int(time.time())))
    return response


def init_app(app: Flask) -> None:
    """Call after the blueprints are registered, and after authentication's
    before_request hook (per-admin limits need the identity)."""
    # Registered before the limiter's own hook, so that it runs after it (Flask
    # runs after_request hooks last-registered first).
    app.after_request(_reset_in_seconds)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # The IETF RateLimit header fields, plus Retry-After on 429.
    app.config.setdefault("RATELIMIT_HEADER_LIMIT", "RateLimit-Limit")
    app.config.setdefault("RATELIMIT_HEADER_REMAINING", "RateLimit-Remaining")
    app.config.setdefault("RATELIMIT_HEADER_RESET", "RateLimit-Reset")
    # O(1) per request and per key, in memory and in Redis; a moving window keeps
    # one timestamp per request and costs more as traffic grows. Near a window
    # boundary the weighted count may let a request or two more through.
    app.config.setdefault("RATELIMIT_STRATEGY", "sliding-window-counter")
    if app.config["RATELIMIT_STORAGE_URI"].startswith("redis"):
        # Fail fast: a limiter that hangs on Redis would hang every request.
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})

    limiter = Limiter(
        key_func=client_ip,
        # Every authenticated request counts against its admin, one budget across
        # all endpoints; anonymous endpoints have the route limits below, or none.
        application_limits=[ApplicationLimit(_setting("RATELIMIT_AUTHENTICATED"), key_function=admin_key)],
        application_limits_exempt_when=lambda: g.get("identity") is None,
        key_prefix="wafaa",
    )
    limiter.request_filter(_unlimited)
    limiter.init_app(app)
    for endpoint, limits in ROUTE_LIMITS.items():
        view = app.view_functions[endpoint]
        for setting, key, scope in limits:
            view = limiter.shared_limit(_setting(setting), key_func=key, scope=scope)(view)
        app.view_functions[endpoint] = view
    app.extensions["wafaa_limiter"] = limiter
