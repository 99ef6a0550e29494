"""The database is a wall on its own: hostile SQL run as the service's login role.

These tests connect exactly as the service does (TEST_DATABASE_URL names its
unprivileged login role) and run what an SQL injection in a request of tenant A
could run: inside a transaction legitimately bound to A through A's live session.
Each statement must fail, or return nothing of tenant B.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import errors, sql

from tests.support import PASSWORD
from wafaa.db_roles import DEFAULT_OWNER, libpq

FORGED_PROOF = "0" * 64


@pytest.fixture
def worlds(factory):
    return factory.world(), factory.world()


@pytest.fixture
def session_of(api, raw_db):
    """Log in as `admin` through the API; (tenant, session, admin) of the new session."""

    def login(admin):
        api.login(admin)
        return raw_db.execute(
            "SELECT tenant_id, id, admin_id FROM auth_sessions WHERE admin_id = %s ORDER BY created_at DESC LIMIT 1",
            (admin.id,),
        ).fetchone()

    return login


@pytest.fixture
def service(database_url):
    """A connection as the service's login role, in autocommit: each test opens
    the transactions it needs."""
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        yield conn


class Attacker:
    """The service's role, inside a transaction bound to tenant A."""

    def __init__(self, conn: psycopg.Connection, session: tuple) -> None:
        self.conn = conn
        self.session = session

    @contextmanager
    def bound(self):
        with self.conn.transaction():
            assert self.conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", self.session).fetchone()[0] is True
            yield

    def rows(self, statement: str, params=()) -> list[tuple]:
        with self.conn.transaction():
            assert self.conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", self.session).fetchone()[0]
            return self.conn.execute(statement, params).fetchall()

    def refused(self, statement: str, params=(), error=errors.InsufficientPrivilege) -> None:
        with pytest.raises(error), self.conn.transaction():
            self.conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", self.session)
            self.conn.execute(statement, params)


@pytest.fixture
def attacker(service, worlds, session_of) -> Attacker:
    a, _ = worlds
    return Attacker(service, session_of(a.owner))


def b_rows(attacker: Attacker, b, *preamble: str) -> dict[str, int]:
    """How many of tenant B's rows each table shows after `preamble` ran in the
    same bound transaction."""
    counts = {}
    with attacker.conn.transaction():
        attacker.conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", attacker.session)
        for statement in preamble:
            attacker.conn.execute(statement)
        for table, column in (
            ("tenants", "id"),
            ("tenant_admins", "tenant_id"),
            ("auth_sessions", "tenant_id"),
            ("audit_logs", "tenant_id"),
        ):
            query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(column)
            )
            counts[table] = attacker.conn.execute(query, (b.tenant.id,)).fetchone()[0]
    return counts


NOTHING = {"tenants": 0, "tenant_admins": 0, "auth_sessions": 0, "audit_logs": 0}


def test_the_bound_transaction_sees_its_own_tenant(attacker, worlds, session_of):
    a, b = worlds
    session_of(b.owner)  # B has a session and audit rows too
    assert attacker.rows("SELECT id FROM tenants") == [(a.tenant.id,)]
    assert {r[0] for r in attacker.rows("SELECT DISTINCT tenant_id FROM tenant_admins")} == {a.tenant.id}
    assert b_rows(attacker, b) == NOTHING


@pytest.mark.parametrize(
    "preamble",
    [
        pytest.param(("RESET ROLE",), id="reset-role"),
        pytest.param(("SET ROLE wafaa_app",), id="set-role-request-role"),
        pytest.param(("SET LOCAL ROLE wafaa_app", "RESET ROLE"), id="set-then-reset"),
        pytest.param(("SELECT set_config('app.system', 'on', true)",), id="system-flag"),
        pytest.param(("RESET ALL",), id="reset-all"),
        pytest.param(("DISCARD ALL",), id="discard-all"),
    ],
)
def test_role_and_setting_games_show_nothing_of_another_tenant(attacker, worlds, session_of, preamble):
    _, b = worlds
    session_of(b.owner)
    if preamble == ("DISCARD ALL",):
        # DISCARD ALL cannot run inside a transaction block: PostgreSQL refuses it.
        attacker.refused("DISCARD ALL", error=errors.ActiveSqlTransaction)
        return
    assert b_rows(attacker, b, *preamble) == NOTHING


@pytest.mark.parametrize(
    "statement",
    [
        "SET ROLE postgres",
        f"SET ROLE {DEFAULT_OWNER}",
        "SET SESSION AUTHORIZATION postgres",
        f"SET SESSION AUTHORIZATION {DEFAULT_OWNER}",
        "SELECT set_config('role', 'postgres', false)",
        f"SELECT set_config('role', '{DEFAULT_OWNER}', true)",
        "SELECT set_config('session_authorization', 'postgres', false)",
        "SET ROLE pg_read_all_data",
    ],
)
def test_no_other_role_can_be_taken(attacker, statement):
    attacker.refused(statement)


def test_forging_the_tenant_setting_binds_nothing(attacker, worlds, session_of):
    _, b = worlds
    session_of(b.owner)
    forged = f"SELECT set_config('app.tenant_id', '{b.tenant.id}', true)"
    assert b_rows(attacker, b, forged) == NOTHING
    assert b_rows(attacker, b, forged, f"SELECT set_config('app.tenant_proof', '{FORGED_PROOF}', true)") == NOTHING
    # Its own tenant's proof is no proof for another tenant...
    assert b_rows(attacker, b, f"SELECT set_config('app.tenant_id', '{b.tenant.id}', false)") == NOTHING
    with attacker.bound():
        own_proof = attacker.conn.execute("SELECT current_setting('app.tenant_proof')").fetchone()[0]
    steal = f"SELECT set_config('app.tenant_proof', '{own_proof}', true)"
    assert b_rows(attacker, b, forged, steal) == NOTHING
    # ...and a proof from one transaction is worth nothing in the next, even for
    # the tenant it was made for.
    a = worlds[0]
    with attacker.conn.transaction():
        attacker.conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(a.tenant.id),))
        attacker.conn.execute("SELECT set_config('app.tenant_proof', %s, true)", (own_proof,))
        assert attacker.conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 0
        assert attacker.conn.execute("SELECT wafaa_current_tenant()").fetchone()[0] is None


def test_binding_needs_a_live_session_of_that_tenant(attacker, worlds, session_of, raw_db):
    a, b = worlds
    tenant_b, session_b, admin_b = session_of(b.owner)
    _, session_a, admin_a = attacker.session
    for params in (
        (tenant_b, session_a, admin_a),  # A's session, B's tenant
        (tenant_b, uuid.uuid4(), admin_b),  # a guessed session
        (tenant_b, session_b, admin_a),  # B's session with the wrong admin
        (None, None, None),
    ):
        with attacker.conn.transaction():
            assert attacker.conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", params).fetchone()[0] is False
            assert attacker.conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 0
    # A revoked session binds nothing any more.
    raw_db.execute("UPDATE auth_sessions SET revoked_at = now() WHERE id = %s", (session_b,))
    with attacker.conn.transaction():
        assert (
            attacker.conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", (tenant_b, session_b, admin_b)).fetchone()[0]
            is False
        )


def test_an_unbound_transaction_sees_no_rows_at_all(service, worlds):
    for table in ("tenants", "tenant_admins", "auth_sessions", "audit_logs"):
        assert service.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0] == 0


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT password_hash FROM tenant_admins",
        "SELECT * FROM tenant_admins",
        "SELECT a FROM tenant_admins a",
        "SELECT to_jsonb(a) FROM tenant_admins a",
        "SELECT count(*) FROM tenant_admins WHERE password_hash LIKE '$2%%'",
        "COPY tenant_admins TO STDOUT",
    ],
)
def test_password_hashes_are_not_readable_even_of_its_own_tenant(attacker, statement):
    attacker.refused(statement)


def test_the_login_salt_is_all_of_a_hash_that_leaves_the_database(attacker, worlds, raw_db):
    _, b = worlds
    stored = raw_db.execute("SELECT password_hash FROM tenant_admins WHERE id = %s", (b.owner.id,)).fetchone()[0]
    salt = attacker.conn.execute("SELECT wafaa_login_salt(%s, 4)", (b.owner.email,)).fetchone()[0]
    assert salt == stored[:29] and stored[29:] not in salt
    # An unknown email gets a salt of the same shape, the same every time.
    ghost = [attacker.conn.execute("SELECT wafaa_login_salt('ghost@nowhere.test', 4)").fetchone()[0] for _ in "ab"]
    assert ghost[0] == ghost[1] and len(ghost[0]) == 29 and ghost[0].startswith("$2b$04$")
    attacker.refused("SELECT wafaa_login_salt(NULL, 4)", error=errors.InvalidParameterValue)
    attacker.refused("SELECT wafaa_login_salt('x@y.test', 99)", error=errors.InvalidParameterValue)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tenants SET id = gen_random_uuid()",
        "UPDATE tenants SET slug = 'stolen'",
        "UPDATE tenants SET subscription_tier = 'premium'",
        "UPDATE tenants SET created_at = now()",
        "UPDATE tenants SET is_active = true",
        "UPDATE tenant_admins SET id = gen_random_uuid()",
        "UPDATE tenant_admins SET tenant_id = tenant_id",
        "UPDATE tenant_admins SET created_at = now()",
        "UPDATE tenant_admins SET password_hash = 'x'",
        "UPDATE tenant_admins SET email = 'x@y.test'",
        "UPDATE tenant_admins SET last_login = now()",
        "UPDATE auth_sessions SET id = gen_random_uuid()",
        "UPDATE auth_sessions SET tenant_id = tenant_id",
        "UPDATE auth_sessions SET created_at = now()",
        "UPDATE auth_sessions SET admin_id = admin_id",
        "INSERT INTO auth_sessions (tenant_id, admin_id, refresh_jti, last_used_at, expires_at) "
        "SELECT tenant_id, id, 'x', now(), now() + interval '1 day' FROM tenant_admins",
        "DELETE FROM tenants",
        "DELETE FROM tenant_admins",
        "DELETE FROM auth_sessions",
        "UPDATE audit_logs SET action = 'nothing'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
        "TRUNCATE tenants CASCADE",
    ],
)
def test_columns_the_api_never_changes_and_the_audit_log_are_out_of_reach(attacker, statement):
    attacker.refused(statement)


def test_rows_cannot_be_written_into_another_tenant(attacker, worlds):
    a, b = worlds
    attacker.refused(
        "INSERT INTO audit_logs (tenant_id, action, resource_type) VALUES (%s, 'x', 'y')",
        (b.tenant.id,),
        error=errors.InsufficientPrivilege,  # WITH CHECK: "new row violates row-level security policy"
    )
    # And nothing of B's can be updated: the policy hides every row of B.
    with attacker.bound():
        moved = attacker.conn.execute("UPDATE tenants SET name = 'owned' WHERE id = %s", (b.tenant.id,))
        assert moved.rowcount == 0


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE stolen (id int)",
        "CREATE TEMP TABLE stolen (id int)",
        "CREATE TEMP VIEW stolen AS SELECT 1",
        "CREATE VIEW stolen AS SELECT * FROM tenants",
        "CREATE SCHEMA stolen",
        "CREATE FUNCTION stolen() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION pg_temp.stolen() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE POLICY stolen ON tenants USING (true)",
        "ALTER TABLE tenants DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON tenants",
        "GRANT SELECT ON tenant_admins TO PUBLIC",
        "CREATE ROLE stolen",
        "SELECT * FROM wafaa_private.binding_key",
        "SELECT wafaa_private.bind_tenant(gen_random_uuid())",
        "SELECT wafaa_private.tenant_proof(gen_random_uuid())",
        "SELECT wafaa_private.mac('x')",
        "SELECT wafaa_private.recent_login_failures(gen_random_uuid(), gen_random_uuid(), interval '1 day')",
        "SELECT pg_read_file('postgresql.conf')",
        "COPY tenants FROM PROGRAM 'true'",
    ],
)
def test_it_can_create_nothing_and_run_no_owner_function(attacker, statement):
    with pytest.raises((errors.InsufficientPrivilege, errors.UndefinedFunction)), attacker.conn.transaction():
        attacker.conn.execute(statement)


def test_it_cannot_create_a_database_or_role_outside_a_transaction_either(service):
    for statement in ("CREATE DATABASE stolen", "CREATE ROLE stolen SUPERUSER"):
        with pytest.raises(errors.InsufficientPrivilege):
            service.execute(statement)


def test_the_service_role_may_execute_exactly_the_functions_it_calls(raw_db, database_url):
    from psycopg.conninfo import conninfo_to_dict

    service = conninfo_to_dict(libpq(database_url))["user"]
    executable = {
        row[0]
        for row in raw_db.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname IN ('public', 'wafaa_private') AND has_function_privilege(%s, p.oid, 'EXECUTE')",
            (service,),
        )
    }
    assert executable == {
        "wafaa_current_tenant()",
        "wafaa_bind_session(uuid,uuid,uuid)",
        "wafaa_request_identity(uuid,uuid,uuid)",
        "wafaa_login_salt(text,integer)",
        "wafaa_login(text,text,text,integer,interval,interval,uuid,text,interval,text,text,text,jsonb)",
    }


def test_every_security_definer_function_pins_its_search_path(raw_db):
    unpinned = raw_db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname IN ('public', 'wafaa_private') AND p.prosecdef "
        "AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=pg_catalog%%')"
    ).fetchall()
    assert unpinned == []
    definers = raw_db.execute(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.prosecdef"
    ).fetchone()[0]
    assert definers == 5


def test_the_login_role_is_what_production_requires(raw_db, database_url):
    from psycopg.conninfo import conninfo_to_dict

    service = conninfo_to_dict(libpq(database_url))["user"]
    row = raw_db.execute(
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, "
        "(SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
        " + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid), "
        "array(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid) "
        "FROM pg_roles r WHERE rolname = %s",
        (service,),
    ).fetchone()
    assert row == (True, False, False, False, False, 0, ["wafaa_app"])


def test_other_backends_sql_never_shows_a_session_id(attacker, worlds, session_of, database_url):
    """pg_stat_activity shows the same role its other backends' SQL text: the
    session ids that bind a transaction travel as bind parameters."""
    _, b = worlds
    tenant_b, session_b, admin_b = session_of(b.owner)
    with psycopg.connect(libpq(database_url)) as victim:
        victim.execute("SELECT wafaa_bind_session(%s, %s, %s)", (tenant_b, session_b, admin_b))
        seen = attacker.conn.execute("SELECT string_agg(query, ' ') FROM pg_stat_activity").fetchone()[0]
        victim.rollback()
    assert "wafaa_bind_session" in seen and str(session_b) not in seen


def test_an_api_login_still_works_after_all_this(api, worlds):
    a, _ = worlds
    assert api.login(a.owner, PASSWORD)["token_type"] == "Bearer"


# --- found by an attack review: the login functions, the pool, built-ins ----------------

LOGIN = (
    "SELECT outcome, tenant_id, admin_id FROM wafaa_login(%s, %s, NULL, %s, %s::interval, %s::interval,"
    " gen_random_uuid(), 'jti', %s::interval, %s, %s, 'test', %s::jsonb)"
)


def _login_args(email, threshold=10, window="15 minutes", lifetime="7 days", ip=None, details="{}", **policy):
    base, source = policy.get("base", "1 second"), policy.get("source", "203.0.113.9")
    return (email, None, threshold, window, base, lifetime, ip, source, details)


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param({"threshold": 2_147_483_647}, id="lockout-off"),
        pytest.param({"window": "1 microsecond"}, id="window-gone"),
        pytest.param({"base": "0 seconds"}, id="throttle-off"),
        pytest.param({"lifetime": "100 years"}, id="endless-session"),
        pytest.param({"ip": "6.6.6.6; DROP"}, id="forged-address"),
        pytest.param({"source": "everyone; DROP"}, id="forged-source"),
        pytest.param({"details": '{"note": "forged by tenant A"}'}, id="forged-details"),
        pytest.param({"details": '{"request_id": {"x": 1}}'}, id="nested-details"),
    ],
)
def test_the_login_function_refuses_a_policy_outside_the_services_bounds(attacker, worlds, raw_db, policy):
    _, b = worlds
    with pytest.raises(errors.InvalidParameterValue):
        attacker.conn.execute(LOGIN, _login_args(b.owner.email, **policy))
    failures = "SELECT count(*) FROM audit_logs WHERE tenant_id = %s AND action LIKE 'auth.%%'"
    assert raw_db.execute(failures, (b.tenant.id,)).fetchone() == (0,)


def test_the_login_function_tells_nothing_of_a_refused_account(attacker, worlds):
    _, b = worlds
    known = attacker.conn.execute(LOGIN, _login_args(b.owner.email)).fetchone()
    ghost = attacker.conn.execute(LOGIN, _login_args("ghost@nowhere.test")).fetchone()
    assert known == ghost == ("refused", None, None)
    # Nor does the salt's cost: asked with two costs, an unknown email answers
    # with the same (a stored hash's), like a known one.
    salts = [
        attacker.conn.execute("SELECT wafaa_login_salt(%s, %s)", (email, rounds)).fetchone()[0][:7]
        for email in (b.owner.email, "ghost@nowhere.test")
        for rounds in (4, 12)
    ]
    assert len(set(salts)) == 1


def test_a_deactivated_admins_session_binds_nothing(attacker, worlds, session_of, raw_db):
    _, b = worlds
    tenant_b, session_b, admin_b = session_of(b.owner)
    raw_db.execute("UPDATE tenant_admins SET is_active = false WHERE id = %s", (admin_b,))
    with attacker.conn.transaction():
        bound = attacker.conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", (tenant_b, session_b, admin_b))
        assert bound.fetchone()[0] is False


def test_audit_rows_cannot_be_dated_by_the_service(attacker):
    attacker.refused(
        "INSERT INTO audit_logs (tenant_id, action, resource_type, created_at)"
        " SELECT id, 'auth.login_failed', 'admin', 'infinity' FROM tenants"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
        "SELECT pg_cancel_backend(pg_backend_pid())",
        "SELECT lo_from_bytea(0, 'stash')",
        "SELECT lo_create(0)",
        "SELECT pg_notify('stash', 'x')",
    ],
)
def test_built_ins_that_reach_other_requests_are_not_the_services(attacker, statement):
    attacker.refused(statement)


def test_the_apps_pooled_connections_hold_no_prepared_statements(app, api, worlds):
    """A server-side prepared statement outlives its transaction on a pooled
    connection: SQL injected into one request could replace it and run inside the
    next tenant's request. The service never prepares."""
    from wafaa.extensions import db

    a, _ = worlds
    token = api.login(a.owner)["access_token"]
    for _ in range(12):  # psycopg's default would prepare after 5
        assert api.get("/api/v1/tenants/me", token=token).status_code == 200
        assert api.get("/api/v1/tenants/me/admins", token=token).status_code == 200
    with app.app_context():
        connections = [db.engine.raw_connection() for _ in range(db.engine.pool.checkedin())]
        try:
            for connection in connections:
                cursor = connection.cursor()
                cursor.execute("SELECT count(*) FROM pg_prepared_statements")
                assert cursor.fetchone() == (0,)
                cursor.close()
        finally:
            for connection in connections:
                connection.close()
