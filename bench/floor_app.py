"""The floor the benchmark compares the service with.

The least a Flask app can do to answer the same two reads: Flask, a psycopg 3
connection pool and PyJWT; no ORM, no schemas, no row-level security, no audit, no
rate limiter. It does the same database work as the service, in one query per
request: the token's session (live, admin and tenant active) checked, and the
tenant, or a page of admins or of the audit log with its total, read.

    gunicorn -k sync -w 2 bench.floor_app:app      (env: DATABASE_URL, JWT_SECRET_KEY)
    gunicorn -c gunicorn.conf.py bench.floor_app:app   (the service's gthread layout)
"""

import os

import jwt
from flask import Flask, jsonify, request
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

app = Flask(__name__)
SECRET = os.environ["JWT_SECRET_KEY"]
_PREPARE_SETTING = os.environ.get("FLOOR_PREPARE_THRESHOLD", "5")
_PREPARE = None if _PREPARE_SETTING == "off" else int(_PREPARE_SETTING)
pool = ConnectionPool(
    os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://"),
    min_size=int(os.environ.get("DB_POOL_SIZE", 5)),
    max_size=int(os.environ.get("DB_POOL_SIZE", 5)),
    # psycopg's own default (prepare after 5 runs) at its best; "off" behind
    # PgBouncer in transaction mode, which cannot carry prepared statements.
    kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": _PREPARE},
    open=False,
)

# Names the tenant, as the service's queries do: on Citus a query that does not
# is sent to every shard, or refused (a join not on the distribution column).
SESSION_AND_TENANT = """
    SELECT t.id, t.name, t.slug, t.subscription_tier::text AS subscription_tier, t.is_active, t.settings,
           t.created_at, t.updated_at
    FROM auth_sessions s
    JOIN tenant_admins a ON a.tenant_id = s.tenant_id AND a.id = s.admin_id
    JOIN tenants t ON t.id = s.tenant_id
    WHERE s.tenant_id = %s AND s.id = %s AND s.admin_id = %s AND s.revoked_at IS NULL AND s.expires_at > now()
      AND a.is_active AND t.is_active
"""
# The pages: the session check and the page (with its total) in ONE query each,
# a row with null columns when the session holds but the page is empty.
LIVE_SESSION = """
    SELECT s.tenant_id, a.role FROM auth_sessions s
    JOIN tenant_admins a ON a.tenant_id = s.tenant_id AND a.id = s.admin_id
    JOIN tenants t ON t.id = s.tenant_id
    WHERE s.tenant_id = %s AND s.id = %s AND s.admin_id = %s AND s.revoked_at IS NULL AND s.expires_at > now()
      AND a.is_active AND t.is_active
"""
ADMINS_PAGE = f"""
    WITH me AS ({LIVE_SESSION})
    SELECT p.* FROM me LEFT JOIN LATERAL (
        SELECT id, email, full_name, role::text AS role, is_active, last_login, created_at, updated_at,
               count(*) OVER () AS total
        FROM tenant_admins WHERE tenant_id = me.tenant_id ORDER BY created_at, id LIMIT 20
    ) p ON true
"""
AUDIT_PAGE = f"""
    WITH me AS ({LIVE_SESSION})
    SELECT p.* FROM me LEFT JOIN LATERAL (
        SELECT id, action, resource_type, resource_id, user_id, details, ip_address, created_at,
               count(*) OVER () AS total
        FROM audit_logs WHERE tenant_id = me.tenant_id ORDER BY created_at DESC, id DESC LIMIT 20
    ) p ON true
    WHERE me.role IN ('owner', 'admin')
"""


def _claims():
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    try:
        return jwt.decode(header[7:], SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return None


def _unauthorized():
    return jsonify(error="unauthorized"), 401


@app.get("/api/v1/tenants/me")
def tenant_me():
    claims = _claims()
    if claims is None:
        return _unauthorized()
    with pool.connection() as conn:
        tenant = conn.execute(SESSION_AND_TENANT, (claims["tid"], claims["sid"], claims["sub"])).fetchone()
    if tenant is None:
        return _unauthorized()
    return jsonify(tenant)


def _page(query: str):
    claims = _claims()
    if claims is None:
        return _unauthorized()
    with pool.connection() as conn:
        rows = conn.execute(query, (claims["tid"], claims["sid"], claims["sub"])).fetchall()
    if not rows:
        return _unauthorized()
    items = [row for row in rows if row["id"] is not None]
    total = items[0]["total"] if items else 0
    for row in items:
        row.pop("total")
    return jsonify(items=items, page=1, page_size=20, total=total, pages=(total + 19) // 20)


@app.get("/api/v1/tenants/me/admins")
def admins():
    return _page(ADMINS_PAGE)


@app.get("/api/v1/tenants/me/audit-logs")
def audit_logs():
    return _page(AUDIT_PAGE)


@app.get("/health")
def health():
    return jsonify(status="ok")


pool.open()
