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
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from config import REPOSITORY_DIR
from wafaa import schema_check
from wafaa.health import dependency_checks

log = logging.getLogger("wafaa.readiness")


@functools.cache
def code_heads() -> frozenset[str]:
    """The migration heads this code was shipped with."""
    return frozenset(ScriptDirectory(str(REPOSITORY_DIR / "migrations")).get_heads())


def _schema_checks(conn: Connection) -> dict[str, dict]:
    """On the connection /health's checks just used."""
    try:
        revisions = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
        isolation = schema_check.problems(conn, current_app.config["DB_APP_ROLE"])
    except SQLAlchemyError as error:
        log.error("readiness: schema not readable", extra={"error_type": type(error).__name__})
        return {"migrations": {"status": "unavailable"}, "row_level_security": {"status": "unavailable"}}
    behind = revisions != code_heads()
    if behind:
        log.error("readiness: migrations", extra={"database": sorted(revisions), "code": sorted(code_heads())})
    for problem in isolation:
        log.error("readiness: isolation", extra={"problem": problem})
    return {
        "migrations": {"status": "behind" if behind else "ok"},
        "row_level_security": {"status": "unsafe" if isolation else "ok"},
    }


def readiness_checks() -> dict[str, dict]:
    return dependency_checks(_schema_checks)
