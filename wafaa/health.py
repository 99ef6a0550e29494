"""The checks behind GET /health, which GET /readyz extends (wafaa.readiness).

It asks "does PostgreSQL accept a connection and answer a query right now?", and
whether the service's role is a safe one (not superuser, no BYPASSRLS, owns
nothing; wafaa.db_roles). It uses its own engine without a pool: the check must
not wait behind an exhausted request pool, nor be fooled by a pooled connection
that is still open. A connect timeout bounds it, so the probe answers within
about two seconds even when the database host does not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import current_app
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from wafaa.db_roles import check_connection
from wafaa.ratelimit import storage_check

log = logging.getLogger("wafaa.health")

CHECK_TIMEOUT_SECONDS = 2


def health_engine() -> Engine:
    engine = current_app.extensions.get("wafaa_health_engine")
    if engine is None:
        engine = create_engine(
            current_app.config["SQLALCHEMY_DATABASE_URI"],
            poolclass=NullPool,
            hide_parameters=True,
            connect_args={"connect_timeout": CHECK_TIMEOUT_SECONDS, "application_name": "wafaa-health"},
        )
        current_app.extensions["wafaa_health_engine"] = engine
    return engine


def database_checks(more: Callable[[Connection], dict[str, dict]] | None = None) -> dict[str, dict]:
    """`database`: does it answer; `database_role` (when it does): is the service
    connected as a role that row-level security binds (wafaa.db_roles). The
    problem itself goes to the log, not to this public answer. `more(connection)`
    adds checks of its own on the same connection (readiness), once the database
    has answered."""
    started = time.perf_counter()
    try:
        with health_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            problem = check_connection(conn.exec_driver_sql)
            extra = more(conn) if more is not None else {}
    except SQLAlchemyError:
        return {"database": {"status": "unavailable"}}
    if problem:
        log.error("unsafe database role", extra={"problem": problem})
    return {
        "database": {"status": "ok", "latency_ms": latency_ms},
        "database_role": {"status": "unsafe" if problem else "ok"},
        **extra,
    }


def dependency_checks(more: Callable[[Connection], dict[str, dict]] | None = None) -> dict[str, dict]:
    """The database's checks (and `more`), and the rate limiter's shared storage
    when it is Redis: what /health and /readyz report."""
    checks = database_checks(more)
    limiter_storage = storage_check()
    if limiter_storage is not None:
        checks["rate_limit_storage"] = limiter_storage
    return checks


def probe_answer(checks: dict[str, dict]) -> tuple[dict, int]:
    """200 when every check is ok, else 503, with the checks named."""
    healthy = all(check["status"] == "ok" for check in checks.values())
    return {"status": "ok" if healthy else "unavailable", "checks": checks}, 200 if healthy else 503
