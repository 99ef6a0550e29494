"""Tenant isolation at the database layer: PostgreSQL row-level security.

Here the ORM layer is out of the picture: raw text() SQL and Core statements on the
tables (which the ORM criteria never see) must still reach only the current
tenant's rows, because every transaction of the app runs as the unprivileged role
with the tenant in a transaction-local setting. Nothing of that may survive on a
pooled connection.
"""

from __future__ import annotations

import uuid

import pytest
from flask import jsonify, request
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from tests.support import ApiClient, Factory, TenantWorld
from wafaa.extensions import db
from wafaa.models import AuditLog, AuthSession, Tenant, TenantAdmin
from wafaa.tenancy import TenantScopeError, current_scope, engine_for, system_scope, tenant_scope

INSUFFICIENT_PRIVILEGE = "42501"  # also what PostgreSQL reports for a WITH CHECK violation
TABLES = {"tenants": "id", "tenant_admins": "tenant_id", "auth_sessions": "tenant_id", "audit_logs": "tenant_id"}


@pytest.fixture
def worlds(factory, api, raw_db) -> tuple[TenantWorld, TenantWorld]:
    """Two tenants with admins, sessions and audit rows in every table."""
    a, b = factory.world(), factory.world()
    for world in (a, b):
        api.login(world.owner)
        api.login(world.viewer)
    # Precondition: both tenants have rows in every tenant table.
    for table, column in TABLES.items():
        assert raw_db.execute(f"SELECT count(DISTINCT {column}) FROM {table}").fetchone() == (2,), table
    return a, b


def _tenants_seen(column: str, table: str) -> set[uuid.UUID]:
    return set(db.session.scalars(text(f"SELECT DISTINCT {column} FROM {table}")))


def _sqlstate(error: sa_exc.DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def _table_rows(raw_db, table: str) -> list[str]:
    return [row[0] for row in raw_db.execute(f"SELECT row_to_json(t)::text FROM {table} t ORDER BY id")]


# --- reads -------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(TABLES))
def test_raw_sql_in_a_tenant_scope_sees_only_that_tenant(app, worlds, table):
    a, b = worlds
    with app.app_context(), tenant_scope(a.tenant.id):
        assert _tenants_seen(TABLES[table], table) == {a.tenant.id}
        count = db.session.scalar(text(f"SELECT count(*) FROM {table} WHERE {TABLES[table]} = :b"), {"b": b.tenant.id})
        assert count == 0


def test_core_statements_in_a_tenant_scope_see_only_that_tenant(app, worlds):
    a, b = worlds
    with app.app_context(), tenant_scope(a.tenant.id):
        # Every column but the password hash, which the request role cannot read.
        readable = [c for c in TenantAdmin.__table__.c if c.key != "password_hash"]
        admins = db.session.execute(select(*readable)).all()
        assert {row.tenant_id for row in admins} == {a.tenant.id}
        assert len(admins) == 3
        assert [row.id for row in db.session.execute(select(Tenant.__table__))] == [a.tenant.id]
        sessions = db.session.connection().execute(select(AuthSession.__table__.c.tenant_id)).scalars().all()
        assert set(sessions) == {a.tenant.id}
        logs = db.session.execute(select(AuditLog.__table__.c.tenant_id)).scalars().all()
        assert logs and set(logs) == {a.tenant.id}


def test_a_connection_taken_straight_from_the_engine_in_a_tenant_scope_is_scoped_too(app, worlds):
    a, b = worlds
    with app.app_context(), tenant_scope(a.tenant.id):
        with engine_for(current_scope()).connect() as conn:
            assert set(conn.scalars(text("SELECT tenant_id FROM tenant_admins"))) == {a.tenant.id}
            assert conn.scalar(text("SELECT count(*) FROM tenants")) == 1
        # Outside a request the scope belongs on the owner's engine: the service's
        # engine refuses it rather than run it unbound.
        with pytest.raises(TenantScopeError), db.engine.connect() as conn:
            conn.scalar(text("SELECT 1"))


@pytest.mark.parametrize("table", list(TABLES))
def test_without_a_scope_raw_sql_sees_no_rows(app, worlds, table):
    with app.app_context():
        assert db.session.scalar(text(f"SELECT count(*) FROM {table}")) == 0
        assert db.session.scalar(text("SELECT current_user")) == service_role(app)
        db.session.rollback()
        with db.engine.connect() as conn:
            assert conn.scalar(text(f"SELECT count(*) FROM {table}")) == 0


def service_role(app) -> str:
    """The service's login role: the user of its DATABASE_URL."""
    return make_url(app.config["SQLALCHEMY_DATABASE_URI"]).username


# --- writes ------------------------------------------------------------------------


def _insert_admin(tenant_id: uuid.UUID) -> None:
    # The email registered first, as the unit of work does (wafaa.registrations).
    email = f"intruder-{uuid.uuid4().hex[:8]}@example.test"
    db.session.execute(
        text("INSERT INTO admin_emails (email, tenant_id) VALUES (:email, :t)"), {"t": tenant_id, "email": email}
    )
    db.session.execute(
        text(
            "INSERT INTO tenant_admins (tenant_id, email, full_name, role, password_hash) "
            "VALUES (:t, :email, 'Intruder', 'owner', 'x')"
        ),
        {"t": tenant_id, "email": email},
    )


WRITES_INTO_B = {
    "insert-admin": lambda a, b: _insert_admin(b.tenant.id),
    "insert-session": lambda a, b: db.session.execute(
        text(
            "INSERT INTO auth_sessions (tenant_id, admin_id, refresh_jti, last_used_at, expires_at) "
            "VALUES (:t, :admin, 'jti', now(), now() + interval '1 day')"
        ),
        {"t": b.tenant.id, "admin": b.owner.id},
    ),
    "insert-audit-row": lambda a, b: db.session.execute(
        text("INSERT INTO audit_logs (tenant_id, action, resource_type) VALUES (:t, 'tenant.updated', 'tenant')"),
        {"t": b.tenant.id},
    ),
    "move-own-admin-to-b": lambda a, b: db.session.execute(
        text("UPDATE tenant_admins SET tenant_id = :b WHERE id = :admin"), {"b": b.tenant.id, "admin": a.admin.id}
    ),
    "move-own-sessions-to-b": lambda a, b: db.session.execute(
        text("UPDATE auth_sessions SET tenant_id = :b"), {"b": b.tenant.id}
    ),
    "insert-tenant": lambda a, b: db.session.execute(
        text("INSERT INTO tenants (name, slug) VALUES ('Fresh', :slug)"), {"slug": f"fresh-{uuid.uuid4().hex[:8]}"}
    ),
}


@pytest.mark.parametrize("write", list(WRITES_INTO_B))
def test_raw_writes_that_put_a_row_into_another_tenant_fail(app, raw_db, worlds, write):
    a, b = worlds
    before = {table: _table_rows(raw_db, table) for table in TABLES}
    with app.app_context(), tenant_scope(a.tenant.id):
        with pytest.raises(sa_exc.DBAPIError) as failure:
            WRITES_INTO_B[write](a, b)
        assert _sqlstate(failure.value) == INSUFFICIENT_PRIVILEGE
        db.session.rollback()
    assert {table: _table_rows(raw_db, table) for table in TABLES} == before


def test_raw_insert_into_the_current_tenant_is_allowed(app, raw_db, worlds):
    # Control for the test above: the same INSERT for the scope's own tenant works.
    a, _ = worlds
    with app.app_context(), tenant_scope(a.tenant.id):
        _insert_admin(a.tenant.id)
        db.session.commit()
    assert raw_db.execute("SELECT count(*) FROM tenant_admins WHERE tenant_id = %s", (a.tenant.id,)).fetchone() == (4,)


def test_raw_updates_and_deletes_cannot_reach_another_tenants_rows(app, raw_db, worlds):
    a, b = worlds
    b_before = {table: _table_rows(raw_db, table) for table in TABLES}
    with app.app_context(), tenant_scope(a.tenant.id):
        assert db.session.execute(text("UPDATE tenants SET name = 'Everyone Renamed'")).rowcount == 1
        result = db.session.execute(
            text("UPDATE tenant_admins SET full_name = 'Hijacked' WHERE tenant_id = :b"), {"b": b.tenant.id}
        )
        assert result.rowcount == 0
        assert db.session.execute(text("UPDATE auth_sessions SET last_used_at = now()")).rowcount == 2
        db.session.commit()
    assert raw_db.execute("SELECT name FROM tenants WHERE id = %s", (a.tenant.id,)).fetchone() == ("Everyone Renamed",)
    b_after = {table: _table_rows(raw_db, table) for table in TABLES}
    for table, column in TABLES.items():
        b_rows = [r for r in b_after[table] if str(b.tenant.id) in r]
        assert b_rows == [r for r in b_before[table] if str(b.tenant.id) in r], table
        assert b_rows, f"precondition: B has rows in {table} ({column})"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_logs SET action = 'tampered'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
        "DELETE FROM tenant_admins",
        "DELETE FROM tenants",
    ],
)
def test_the_serving_role_cannot_rewrite_history_or_delete_rows(app, raw_db, worlds, statement):
    a, _ = worlds
    before = {table: _table_rows(raw_db, table) for table in TABLES}
    with app.app_context(), tenant_scope(a.tenant.id):
        with pytest.raises(sa_exc.DBAPIError) as failure:
            db.session.execute(text(statement))
        assert _sqlstate(failure.value) == INSUFFICIENT_PRIVILEGE
        db.session.rollback()
    assert {table: _table_rows(raw_db, table) for table in TABLES} == before


# --- the role ------------------------------------------------------------------------


def test_the_request_role_is_not_superuser_not_bypassrls_and_owns_no_table(app, worlds):
    a, _ = worlds
    with app.app_context(), tenant_scope(a.tenant.id):
        row = db.session.execute(
            text("SELECT current_user, session_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        assert row.current_user == app.config["DB_APP_ROLE"]
        assert row.session_user != row.current_user  # switched with SET LOCAL ROLE
        assert row.rolsuper is False
        assert row.rolbypassrls is False
        owners = db.session.execute(
            text("SELECT tablename, tableowner FROM pg_tables WHERE tablename = ANY(:t)"), {"t": list(TABLES)}
        ).all()
        assert len(owners) == len(TABLES)
        assert all(owner != row.current_user for _, owner in owners)
        rls = db.session.execute(
            text("SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(:t)"),
            {"t": list(TABLES)},
        ).all()
        assert {(name, True, True) for name in TABLES} == set(rls)


def test_the_system_scope_keeps_the_connecting_role(app, worlds):
    with app.app_context(), system_scope("rls test"):
        assert db.session.scalar(text("SELECT current_user = session_user")) is True
        assert db.session.scalar(text("SELECT count(DISTINCT tenant_id) FROM tenant_admins")) == 2


# --- inside a real request, and what it leaves on the pool ---------------------------


@pytest.fixture
def probe_app(make_app):
    """The real app plus one token-protected test route that runs raw SQL in the request."""
    app = make_app()

    def raw_sql_probe():
        row = db.session.execute(
            text(
                "SELECT current_user AS role, current_setting('app.tenant_id', true) AS tenant, "
                "pg_backend_pid() AS pid, (SELECT array_agg(DISTINCT tenant_id::text) FROM tenant_admins) AS admins, "
                "(SELECT array_agg(id::text) FROM tenants) AS tenants, "
                "(SELECT array_agg(DISTINCT tenant_id::text) FROM audit_logs) AS audit"
            )
        ).one()
        core = db.session.execute(select(TenantAdmin.__table__.c.tenant_id)).scalars().all()
        if request.args.get("fail"):
            raise RuntimeError("the request fails after its queries")
        return jsonify({**row._asdict(), "core": sorted({str(t) for t in core})})

    app.add_url_rule("/test-only/raw-sql", "raw_sql_probe", raw_sql_probe)
    return app


@pytest.fixture
def probe_api(probe_app) -> ApiClient:
    return ApiClient(probe_app.test_client(), Factory(probe_app))


def test_raw_sql_inside_a_request_sees_only_the_callers_tenant(probe_app, probe_api, worlds):
    a, b = worlds
    for world in (a, b):
        response = probe_api.get("/test-only/raw-sql", world.viewer)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["role"] == service_role(probe_app)
        assert body["tenant"] == str(world.tenant.id)
        assert body["admins"] == [str(world.tenant.id)]
        assert body["tenants"] == [str(world.tenant.id)]
        assert body["audit"] == [str(world.tenant.id)]
        assert body["core"] == [str(world.tenant.id)]


def _pooled_connection_states(app) -> dict[int, tuple]:
    """Check out every idle connection of the app's pool at once and read its session state."""
    with app.app_context():
        engine = db.engine
        conns = [engine.raw_connection() for _ in range(engine.pool.checkedin())]
        try:
            states = {}
            for conn in conns:
                cursor = conn.cursor()
                cursor.execute(
                    "SELECT pg_backend_pid(), current_setting('app.tenant_id', true), "
                    "current_setting('app.system', true), current_user, session_user, "
                    "current_setting('statement_timeout')"
                )
                pid, *state = cursor.fetchone()
                states[pid] = tuple(state)
                cursor.close()
                conn.rollback()
        finally:
            for conn in conns:
                conn.close()
        return states


def test_after_requests_pooled_connections_carry_no_tenant_and_the_login_role(probe_app, probe_api, raw_db, worlds):
    a, b = worlds
    login_role = service_role(probe_app)
    # The pool sets each connection's default statement timeout when it connects
    # (wafaa.db_pool); a request's own setting must not outlive its transaction.
    raw_db.execute(f"SET statement_timeout = {probe_app.config['DB_STATEMENT_TIMEOUT_MS']}")
    default_timeout = raw_db.execute("SHOW statement_timeout").fetchone()[0]
    raw_db.execute("RESET statement_timeout")
    pids = set()
    for world, fail in ((a, False), (b, True)):
        token = probe_api.login(world.owner)["access_token"]
        assert probe_api.get("/api/v1/tenants/me", token=token).status_code == 200
        assert probe_api.patch("/api/v1/tenants/me", token=token, json={"settings": {"x": 1}}).status_code == 200
        response = probe_api.get("/test-only/raw-sql", token=token, query_string={"fail": "1"} if fail else {})
        assert response.status_code == (500 if fail else 200)
        if not fail:
            pids.add(response.get_json()["pid"])
    states = _pooled_connection_states(probe_app)
    assert pids <= set(states), "the request's connection went back to the pool"
    for pid, (tenant, system, current, session, timeout) in states.items():
        assert tenant in ("", None), pid
        assert system in ("", None, "off"), pid
        assert current == session == login_role, pid
        assert timeout == default_timeout, pid
