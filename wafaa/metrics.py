"""GET /metrics: the service's counters in the Prometheus text format.

Under gunicorn every worker counts on its own; prometheus_client's multiprocess
mode adds them up at scrape time from files in PROMETHEUS_MULTIPROC_DIR, a fresh
directory gunicorn.conf.py makes before the workers start, so any worker's
/metrics answers for all of them. Without that variable (tests, `flask run`) the
process's own registry is the whole picture.

What is counted:
* requests by endpoint (the route, not the URL: ids would make a series each),
  method and status, and their latency;
* the database pool: connections checked out now, and checkouts that timed out;
* login outcomes: success, failure (wrong password, unknown email, throttled or
  inactive: the database function does not say which, on purpose), busy (503,
  the login gate) and limited (429);
* requests refused by a rate limit (429), by endpoint;
* audit rows committed, by action (rows the ORM wrote; a login's own row is in
  the login outcomes).

Not public: the endpoint answers only to addresses in METRICS_ALLOWED_NETWORKS
(loopback by default) or to `Authorization: Bearer <METRICS_TOKEN>` when that is
set; anyone else gets 404, as for a route that does not exist.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import os
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.orm import Session

from wafaa.admission import received_at
from wafaa.errors import NotFound
from wafaa.models import AuditLog
from wafaa.security import PUBLIC, requires

REQUESTS = Counter("wafaa_http_requests_total", "Requests answered", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "wafaa_http_request_duration_seconds",
    "Time to answer a request",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POOL_IN_USE = Gauge(
    "wafaa_db_pool_connections_in_use", "Database connections checked out of the pool", multiprocess_mode="livesum"
)
POOL_TIMEOUTS = Counter("wafaa_db_pool_timeouts_total", "Requests that waited for a connection until DB_POOL_TIMEOUT")
LOGINS = Counter("wafaa_logins_total", "Login attempts by outcome", ["outcome"])
RATE_LIMITED = Counter("wafaa_rate_limit_refusals_total", "Requests refused by a rate limit", ["endpoint"])
AUDIT_ROWS = Counter("wafaa_audit_rows_total", "Audit rows committed", ["action"])

# The JSON login and the OAuth token endpoint (the same login); outcomes by the
# error code, since the token endpoint's failed login is a 400 (RFC 6749).
LOGIN_ENDPOINTS = frozenset({"auth.Login", "auth.Token"})
LOGIN_OUTCOMES = {
    "invalid_credentials": "failure",
    "invalid_grant": "failure",
    "rate_limited": "limited",
    "service_unavailable": "busy",
}


def _login_outcome(status: int) -> str | None:
    return "success" if status == 200 else LOGIN_OUTCOMES.get(g.get("error_code"))


def _allowed() -> bool:
    token = current_app.config["METRICS_TOKEN"]
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in current_app.config["METRICS_ALLOWED_NETWORKS"])


def metrics_view() -> Response:
    """The scrape (not in the OpenAPI document: it is for the operator's Prometheus)."""
    if not _allowed():
        raise NotFound()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@functools.lru_cache(maxsize=4096)
def _series(metric, *labels: str):
    """A labelled series, looked up once (labels() validates and locks per call)."""
    return metric.labels(*labels)


def _finish(response: Response) -> Response:
    current = request._get_current_object()  # one context lookup, not one per attribute
    endpoint = current.endpoint or "unmatched"  # a 404: one series, not one per URL
    if endpoint != "metrics":
        method = current.method
        _series(REQUESTS, endpoint, method, str(response.status_code)).inc()
        # From the request's arrival (wafaa.admission): its wait for a turn included.
        _series(LATENCY, endpoint, method).observe(time.perf_counter() - received_at(current.environ))
        outcome = _login_outcome(response.status_code) if endpoint in LOGIN_ENDPOINTS else None
        if outcome is not None:
            LOGINS.labels(outcome).inc()
        if response.status_code == 429:
            RATE_LIMITED.labels(endpoint).inc()
    return response


def _count_audit_rows(session: Session, flush_context, instances) -> None:
    actions = session.info.setdefault("wafaa_audit_actions", [])
    actions += [obj.action for obj in session.new if isinstance(obj, AuditLog)]


def _committed(session: Session) -> None:
    for action in session.info.pop("wafaa_audit_actions", []):
        AUDIT_ROWS.labels(action).inc()


def _rolled_back(session: Session) -> None:
    session.info.pop("wafaa_audit_actions", None)


def pool_timed_out() -> None:
    POOL_TIMEOUTS.inc()


def _listen_to_sessions() -> None:
    """Once per process, however many apps it builds (the tests build many)."""
    if event.contains(Session, "after_commit", _committed):
        return
    event.listen(Session, "before_flush", _count_audit_rows)
    event.listen(Session, "after_commit", _committed)
    event.listen(Session, "after_soft_rollback", _rolled_back_softly)


def _rolled_back_softly(session: Session, previous_transaction) -> None:
    _rolled_back(session)


def init_app(app: Flask) -> None:
    from wafaa.extensions import db

    app.after_request(_finish)
    # No token of the API: the scraper is not an admin (access: _allowed).
    app.add_url_rule("/metrics", "metrics", requires(PUBLIC)(metrics_view))
    _listen_to_sessions()
    with app.app_context():
        engine = db.engine
    if not getattr(engine, "_wafaa_metrics", False):
        engine._wafaa_metrics = True
        event.listen(engine, "checkout", lambda *args: POOL_IN_USE.inc())
        event.listen(engine, "checkin", lambda *args: POOL_IN_USE.dec())
