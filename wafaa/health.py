"""The database checks behind GET /health.

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

from flask import current_app
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from wafaa.db_roles import check_connection

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


def database_checks() -> dict[str, dict]:
    """`database`: does it answer; `database_role` (when it does): is the service
    connected as a role that row-level security binds (wafaa.db_roles). The
    problem itself goes to the log, not to this public answer."""
    started = time.perf_counter()
    try:
        with health_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            problem = check_connection(conn.exec_driver_sql)
    except SQLAlchemyError:
        return {"database": {"status": "unavailable"}}
    if problem:
        log.error("unsafe database role", extra={"problem": problem})
    return {
        "database": {"status": "ok", "latency_ms": latency_ms},
        "database_role": {"status": "unsafe" if problem else "ok"},
    }
