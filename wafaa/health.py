"""The database check behind GET /health.

It uses its own engine without a pool: it asks "does PostgreSQL accept a connection
and answer a query right now?", which must not wait behind an exhausted request
pool, nor be fooled by a pooled connection that is still open. A connect timeout
bounds it, so the probe answers within about two seconds even
when the database host does not.
"""

from __future__ import annotations

import time

from flask import current_app
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

CHECK_TIMEOUT_SECONDS = 2


def _engine() -> Engine:
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


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with _engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return {"status": "unavailable"}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
