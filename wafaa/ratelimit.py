"""Rate limits: login per client IP and per account, refresh per IP (flask-limiter's
route limits), and every other authenticated endpoint per admin (the admin budget,
below). All of the service's limits are here.

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

import functools
import hashlib
import hmac
import time
import weakref
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter, WindowStats
from redis.commands.core import Script

from wafaa import audit
from wafaa.errors import TooManyRequests
from wafaa.models.admin import normalize_email


def client_ip() -> str:
    """The per-address key: the client's IPv4 address or IPv6 network
    (wafaa.audit.client_source). X-Forwarded-For counts only when
    TRUSTED_PROXY_COUNT > 0 (ProxyFix in create_app): a spoofed header cannot buy
    a fresh bucket."""
    return audit.client_source()


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


@functools.lru_cache(maxsize=16)
def _parsed(limits: str) -> tuple[RateLimitItem, ...]:
    """A limits string (a setting's value), parsed once per value."""
    return tuple(parse_many(limits))


def _failure_limits() -> tuple[RateLimitItem, ...]:
    return _parsed(current_app.config["RATELIMIT_LOGIN_FAILURES"])


# A service that has seen this share of its failed-login budget in the window is
# under a login flood: its password checks then take turns across the host
# (wafaa.passwords.HashingGate), leaving the other cores to the API.
FLOOD_SHARE = 0.1


def check_login_failure_budget() -> bool:
    """429 before any password work once the service has seen its budget of
    failed logins for the window; otherwise whether it is under a login flood
    (FLOOD_SHARE of a budget spent)."""
    if not current_app.config["RATELIMIT_ENABLED"]:
        return False
    strategy = current_limiter().limiter
    flooded = False
    for item in _failure_limits():
        # One read of the window (what strategy.test reads), for both answers.
        reset, remaining = strategy.get_window_stats(item, *_FAILURES_KEY)
        if remaining < 1:
            raise TooManyRequests(
                "Too many failed logins on this service just now. Retry later.",
                retry_after=int(reset - time.time()) + 1,
            )
        flooded = flooded or item.amount - remaining >= max(1, item.amount * FLOOD_SHARE)
    return flooded


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
    current = request._get_current_object()  # one context lookup, not one per attribute
    return (
        current.endpoint is None  # no such route: a 404 (or 405) costs nothing
        or current.endpoint in UNLIMITED_ENDPOINTS
        or current.blueprint in UNLIMITED_BLUEPRINTS
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


# --- The admin budget ------------------------------------------------------------
#
# Every authenticated request without a route limit of its own spends one unit of
# its admin's budget (RATELIMIT_AUTHENTICATED), in the limiter's storage and with its
# strategy (sliding window counter), so all workers and hosts share it. Not through
# flask-limiter: its per-request machinery (resolving, filtering and sorting the
# limits, then reading the window a second time for the headers) cost about 0.6 ms
# of CPU and two Redis round trips per request (docs/performance.md); this is one
# round trip, running limits' own two scripts as one (`_spend_and_read`).


class _WindowRead(SlidingWindowCounterRateLimiter):
    """The strategy's arithmetic (limits' own `get_window_stats`, not a copy of it)
    over a sliding window already read: it is its own storage."""

    def __init__(self, window: tuple[int, float, int, float]) -> None:
        self.storage = self
        self.window = window

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self.window


# The one script per storage (a storage is per app; the tests build many).
_SPEND_AND_READ: weakref.WeakKeyDictionary[RedisStorage, Script] = weakref.WeakKeyDictionary()


def _spend_and_read(storage: RedisStorage) -> Script:
    """limits' own sliding-window scripts, acquire then read, run as one script:
    one command instead of a pipeline of two (38 against 62 us of client CPU per
    call, measured alone), with the scripts' text unchanged inside. Each runs as
    a Lua function whose ARGV is its own arguments."""
    script = _SPEND_AND_READ.get(storage)
    if script is None:

        def text(script: Script) -> str:
            return script.script.decode() if isinstance(script.script, bytes) else script.script

        source = (
            "local acquired = (function(ARGV)\n" + text(storage.lua_acquire_sliding_window) + "\nend)"
            "({ARGV[1], ARGV[2], ARGV[3]})\n"
            "local window = (function(ARGV)\n" + text(storage.lua_sliding_window) + "\nend)({ARGV[2]})\n"
            "return {acquired and 1 or 0, window[1], window[2], window[3], window[4]}\n"
        )
        script = _SPEND_AND_READ[storage] = storage.get_connection().register_script(source)
    return script


def hit_with_stats(
    strategy: SlidingWindowCounterRateLimiter, item: RateLimitItem, *identifiers: str
) -> tuple[bool, WindowStats]:
    """Spend one unit of `item` and read the window after it: one round trip on
    Redis, none in memory."""
    storage = strategy.storage
    if not isinstance(storage, RedisStorage):
        return strategy.hit(item, *identifiers), strategy.get_window_stats(item, *identifiers)
    key = item.key_for(*identifiers)
    keys = [
        storage.prefixed_key(storage._previous_window_key(key)),
        storage.prefixed_key(storage._current_window_key(key)),
    ]
    # Script.__call__ runs EVALSHA, and loads the script again if Redis lost it
    # (a restart or SCRIPT FLUSH).
    acquired, *window = _spend_and_read(storage)(keys, [item.amount, item.get_expiry(), 1])
    # As RedisStorage.get_sliding_window converts the read script's answer.
    previous_count, previous_ttl, current_count, current_ttl = window
    read = (
        int(previous_count or 0),
        max(0, float(previous_ttl or 0)) / 1000,
        int(current_count or 0),
        max(0, float(current_ttl or 0)) / 1000,
    )
    return bool(acquired), _WindowRead(read).get_window_stats(item, *identifiers)


def spend_admin_budget() -> None:
    """before_request, after authentication: 429 once the caller's admin has spent
    the budget; the RateLimit-* headers of the tightest limit either way."""
    context = g._get_current_object()  # one context lookup, not one per use
    identity = context.get("identity")
    budget = current_app.extensions["wafaa_admin_budget"]
    if identity is None or budget is None:
        return
    if _unlimited() or request.endpoint in ROUTE_LIMITS:  # a route limit speaks for itself
        return
    strategy, items = budget
    who = f"admin:{identity.admin.id}"
    headers, breached = None, False
    for item in items:
        acquired, (reset_at, remaining) = hit_with_stats(strategy, item, "wafaa", who)
        if headers is None or remaining < headers[1] or not acquired:
            headers = (item.amount, remaining, reset_at)
        if not acquired:
            breached = True
            break
    if headers is None:
        return
    amount, remaining, reset_at = headers
    reset_in = max(0, int(reset_at - time.time()) + 1)
    context.admin_budget_headers = (
        ("RateLimit-Limit", str(amount)),
        ("RateLimit-Remaining", str(0 if breached else remaining)),
        ("RateLimit-Reset", str(reset_in)),
    )
    if breached:
        raise TooManyRequests(retry_after=reset_in)


def _admin_budget_headers(response: Response) -> Response:
    # Added, not set: no other hook or view writes these names on the endpoints
    # that spend the budget (the route-limited ones are flask-limiter's).
    response.headers.extend(g.get("admin_budget_headers", ()))
    return response


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

    # flask-limiter for the route limits only. They are checked when their
    # wrapped views (below) are called; its before-request check serves default
    # and application limits, of which there are none (the admin budget has its
    # own hook), so it goes, and the other requests do not pay for it.
    limiter = Limiter(key_func=client_ip, key_prefix="wafaa")
    limiter.request_filter(_unlimited)
    limiter.init_app(app)
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    _limiter_hooks_only_where_route_limited(app, limiter)
    # The budget's strategy and limits, read once: (strategy, items), or None.
    items = _parsed(app.config["RATELIMIT_AUTHENTICATED"]) if app.config["RATELIMIT_ENABLED"] else ()
    app.extensions["wafaa_admin_budget"] = (limiter.limiter, items) if items else None
    app.before_request(spend_admin_budget)  # after security's hook: it needs the identity
    app.after_request(_admin_budget_headers)
    for endpoint, limits in ROUTE_LIMITS.items():
        view = app.view_functions[endpoint]
        for setting, key, scope in limits:
            view = limiter.shared_limit(_setting(setting), key_func=key, scope=scope)(view)
        app.view_functions[endpoint] = view
    app.extensions["wafaa_limiter"] = limiter


def _limiter_hooks_only_where_route_limited(app: Flask, limiter: Limiter) -> None:
    """flask-limiter's after-request hook (its headers, then read as seconds:
    `_reset_in_seconds`) and teardown (its state of the request) have work only
    where one of its limits was checked: at the route-limited endpoints. They
    become hooks of the blueprints holding those endpoints, which Flask runs for
    that blueprint's requests only; as app hooks they built and dropped an empty
    state on every request."""

    def owned(hook) -> bool:
        return getattr(hook, "__self__", None) is limiter or (
            isinstance(hook, functools.partial) and limiter in hook.args
        )

    def after_request(hook):
        return lambda response: _reset_in_seconds(hook(response))

    blueprints = {endpoint.rpartition(".")[0] for endpoint in ROUTE_LIMITS}
    for registry, wrap in ((app.after_request_funcs, after_request), (app.teardown_request_funcs, None)):
        found = [hook for hook in registry[None] if owned(hook)]
        if not found:
            raise RuntimeError("flask-limiter's hooks were not found: its registration changed")
        for hook in found:
            registry[None].remove(hook)
            for blueprint in blueprints:
                registry[blueprint].append(wrap(hook) if wrap else hook)
