"""The checks behind GET /readyz: may this process take traffic now?

Beyond /health's (the database answers, the service's role is a safe one, the
rate limiter's Redis answers when configured): the database is at the code's
migration head, and every tenant-scoped table has its row-level security,
policies and grants (wafaa.schema_check). A deploy whose migration has not run,
or a table whose isolation was dropped by hand, is not ready. Problems are named
in the log, never in the public answer.
"""

from __future__ import annotations

import functools
import logging

from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from config import REPOSITORY_DIR
from wafaa import schema_check
from wafaa.health import database_checks, health_engine
from wafaa.ratelimit import storage_check

log = logging.getLogger("wafaa.readiness")


@functools.cache
def code_heads() -> frozenset[str]:
    """The migration heads this code was shipped with."""
    return frozenset(ScriptDirectory(str(REPOSITORY_DIR / "migrations")).get_heads())


def _schema_checks() -> dict[str, dict]:
    try:
        with health_engine().connect() as conn:
            revisions = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
            isolation = schema_check.problems(conn, current_app.config["DB_APP_ROLE"])
    except SQLAlchemyError as error:
        log.error("readiness: schema not readable", extra={"error_type": type(error).__name__})
        return {"migrations": {"status": "unavailable"}, "row_level_security": {"status": "unavailable"}}
    if revisions != code_heads():
        log.error("readiness: migrations", extra={"database": sorted(revisions), "code": sorted(code_heads())})
    for problem in isolation:
        log.error("readiness: isolation", extra={"problem": problem})
    return {
        "migrations": {"status": "ok" if revisions == code_heads() else "behind"},
        "row_level_security": {"status": "unsafe" if isolation else "ok"},
    }


def readiness_checks() -> dict[str, dict]:
    checks = database_checks()
    if checks["database"]["status"] == "ok":
        checks.update(_schema_checks())
    limiter_storage = storage_check()
    if limiter_storage is not None:
        checks["rate_limit_storage"] = limiter_storage
    return checks
