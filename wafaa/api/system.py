"""System endpoints: the probes (health, liveness, readiness) and what the service is."""

from datetime import UTC, datetime

from flask import current_app

from wafaa.api import Blueprint
from wafaa.health import dependency_checks, probe_answer
from wafaa.readiness import readiness_checks
from wafaa.schemas.system import HealthSchema, LivenessSchema, ReadinessSchema, SystemInfoSchema

blp = Blueprint("system", __name__, description="Health and service information")


@blp.route("/health")
@blp.public
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="A dependency is unavailable")
@blp.doc(operationId="get_health")
def health():
    """Health of the service and its database

    200 when every check passes, 503 (same body) when one fails: the database,
    whether the service's database role is a safe one (`database_role`: not a
    superuser, no BYPASSRLS, owns nothing), and the rate limiter's shared
    storage when it is Redis. Meant for load
    balancers and orchestrators; it takes at most about two seconds.
    """
    return probe_answer(dependency_checks())


@blp.route("/livez")
@blp.public
@blp.response(200, LivenessSchema)
@blp.doc(operationId="get_liveness")
def livez():
    """Liveness: the process answers

    No database, no Redis: an orchestrator restarts the process only when the
    process itself is stuck, never because a dependency is down.
    """
    return {"status": "ok"}


@blp.route("/readyz")
@blp.public
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, schema=ReadinessSchema, description="Not ready: a check failed")
@blp.doc(operationId="get_readiness")
def readyz():
    """Readiness: this process may take traffic

    /health's checks, and: the database is at the code's migration head
    (`migrations`), and every tenant-scoped table has its row-level security,
    policies and grants (`row_level_security`). 503 with the same body when one
    fails; what failed is logged, not shown.
    """
    return probe_answer(readiness_checks())


@blp.route("/api/v1/system/info")
@blp.public
@blp.response(200, SystemInfoSchema)
@blp.doc(operationId="get_system_info")
def info():
    """Name and version of the service

    Deliberately nothing about the platform (no library, Python or server
    versions): those only help an attacker.
    """
    config = current_app.config
    return {
        "name": config["APP_NAME"],
        "version": config["APP_VERSION"],
        "api_version": config["API_VERSION"],
        "status": "ok",
        "server_time": datetime.now(UTC),
    }
