"""The migrations build the whole schema, tear it down completely, build it again
identically, and match the models exactly.

Everything runs on a scratch database of its own (created here, dropped at the
end) through the real `flask db ...` commands (Flask's CLI runner), with a
request role of its own too: roles are cluster-wide and the downgrade of revision
0003 drops its role, which must never touch the role other test databases use.
"""

from __future__ import annotations

import re
import time

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from psycopg import sql
from sqlalchemy.engine import make_url

from config import TestConfig
from tests.conftest import dispose
from wafaa import create_app
from wafaa.db_roles import bootstrap
from wafaa.extensions import db
from wafaa.schema_kit import SQL_DIR
from wafaa.tenancy import current_scope, engine_for, system_scope

HEAD = "0008_distributable"
TABLES = {"tenants", "tenant_admins", "auth_sessions", "audit_logs", "login_throttles", "tenant_slugs", "admin_emails"}
TABLES_OF_0005 = TABLES - {"login_throttles", "tenant_slugs", "admin_emails"}
ENUM_TYPES = {"subscription_tier", "admin_role"}
FUNCTIONS = {
    "wafaa_set_updated_at",
    "wafaa_request_identity",
    "wafaa_current_tenant",
    "wafaa_bind_session",
    "wafaa_login_salt",
    "wafaa_login",
}
FUNCTIONS_OF_0004 = {
    "wafaa_set_updated_at",
    "wafaa_request_identity",
    "wafaa_login_candidate",
    "wafaa_recent_login_failures",
    "wafaa_start_session",
}
RLS_TABLES = TABLES


def _libpq(url) -> str:
    return url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://", 1)


class Scratch:
    """The scratch database, its app, and ways to look at it from beneath."""

    def __init__(self, url: str, role: str, app) -> None:
        self.url = url
        self.role = role
        self.app = app
        self.runner = app.test_cli_runner()

    def flask_db(self, *args: str) -> str:
        # The flask-migrate commands push their own app context (with_appcontext).
        result = self.runner.invoke(args=["db", *args])
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    def upgrade(self) -> float:
        started = time.perf_counter()
        self.flask_db("upgrade")
        return time.perf_counter() - started

    def query(self, statement: str, params=()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(statement, params).fetchall()

    def execute(self, statement: str, params=()) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement, params)

    # --- what exists ---

    def tables(self) -> set[str]:
        return {r[0] for r in self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    def enum_types(self) -> set[str]:
        return {
            r[0]
            for r in self.query(
                "SELECT typname FROM pg_type WHERE typtype = 'e' AND typnamespace = 'public'::regnamespace"
            )
        }

    def functions(self) -> set[str]:
        return {r[0] for r in self.query("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")}

    def triggers(self) -> set[tuple[str, str]]:
        rows = self.query(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace"
        )
        return set(rows)

    def rls(self) -> dict[str, tuple[bool, bool]]:
        rows = self.query(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        )
        return {name: (enabled, forced) for name, enabled, forced in rows}

    def policies(self) -> set[tuple[str, str]]:
        return set(self.query("SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'public'"))

    def role_exists(self) -> bool:
        return bool(self.query("SELECT 1 FROM pg_roles WHERE rolname = %s", [self.role]))

    def grants(self) -> set[tuple[str, str]]:
        rows = self.query(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s AND table_schema = 'public'",
            [self.role],
        )
        return set(rows)

    def column_grants(self, privilege: str) -> set[tuple[str, str]]:
        """Columns `privilege` was granted on one by one (not through the table)."""
        rows = self.query(
            "SELECT c.table_name, c.column_name FROM information_schema.column_privileges c "
            "WHERE c.grantee = %s AND c.table_schema = 'public' AND c.privilege_type = %s "
            "AND NOT EXISTS (SELECT FROM information_schema.role_table_grants t WHERE t.grantee = c.grantee "
            "AND t.table_name = c.table_name AND t.privilege_type = c.privilege_type)",
            [self.role, privilege],
        )
        return set(rows)

    def version(self) -> list[str]:
        return [r[0] for r in self.query("SELECT version_num FROM alembic_version")]

    def snapshot(self) -> dict:
        """Everything about the schema that a migration decides, in comparable form."""
        return {
            "columns": sorted(
                self.query(
                    "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default, "
                    "character_maximum_length FROM information_schema.columns WHERE table_schema = 'public'"
                )
            ),
            "constraints": sorted(
                self.query(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE connamespace = 'public'::regnamespace"
                )
            ),
            "indexes": sorted(
                self.query("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
            ),
            "triggers": sorted(self.triggers()),
            "enums": sorted(
                self.query(
                    "SELECT t.typname, e.enumlabel, e.enumsortorder "
                    "FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
                )
            ),
            "functions": sorted(
                self.query(
                    "SELECT proname, pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
                )
            ),
            "rls": sorted(self.rls().items()),
            "policies": sorted(
                self.query(
                    "SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies "
                    "WHERE schemaname = 'public'"
                )
            ),
            "grants": sorted(self.grants()),
        }


@pytest.fixture(scope="module")
def scratch(superuser_url):
    main = make_url(superuser_url)
    name = re.sub(r"[^a-z0-9_]", "_", f"{main.database}_migrations".lower())[:50]
    assert "test" in name
    role = f"{name}_app"
    maintenance = _libpq(main.set(database="postgres"))
    url = _libpq(main.set(database=name))

    def drop() -> None:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

    drop()
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    # The roles, as the tooling makes them; a request role of its own, so that
    # what the migrations grant and revoke can be seen on this database alone.
    urls = bootstrap(url, app_role=role)

    with pytest.MonkeyPatch.context() as mp:
        # Read once, when the app is created.
        mp.setenv("TEST_DATABASE_URL", urls.service)
        mp.setenv("TEST_MIGRATION_DATABASE_URL", urls.owner)
        mp.setenv("DB_APP_ROLE", role)
        app = create_app(TestConfig)
    assert make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database == name
    assert app.config["DB_APP_ROLE"] == role
    try:
        yield Scratch(url, role, app)
    finally:
        dispose(app)  # the owner's engine too
        drop()


def assert_fully_built(scratch: Scratch) -> None:
    assert scratch.tables() == TABLES | {"alembic_version"}
    assert scratch.enum_types() == ENUM_TYPES
    assert FUNCTIONS <= scratch.functions()
    assert scratch.triggers() == {
        ("tenants", "tenants_set_updated_at"),
        ("tenant_admins", "tenant_admins_set_updated_at"),
    }
    assert scratch.version() == [HEAD]
    assert_rls_on(scratch)


def assert_rls_on(scratch: Scratch) -> None:
    rls = scratch.rls()
    for table in RLS_TABLES:
        assert rls[table] == (True, True), f"RLS not enabled and forced on {table}"
    assert scratch.policies() == {(t, p) for t in RLS_TABLES for p in ("tenant_isolation", "system_access")}
    assert scratch.role_exists()
    attributes = scratch.query(
        "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
        [scratch.role],
    )
    assert attributes == [(False, False, False, False, False)]
    # The request role reads and writes what requests need, column by column,
    # and never deletes; the audit log is append-only for it.
    assert scratch.grants() == {
        ("tenants", "SELECT"),
        ("auth_sessions", "SELECT"),
        ("audit_logs", "SELECT"),
        # Only the login function writes it.
        ("login_throttles", "SELECT"),
        # GET /readyz compares the database's revision with the code's head.
        ("alembic_version", "SELECT"),
        # The registries of slugs and emails (its own tenant's rows only).
        ("tenant_slugs", "SELECT"),
        ("admin_emails", "SELECT"),
    }
    # Creating an admin registers their email.
    assert {c for t, c in scratch.column_grants("INSERT") if t == "admin_emails"} == {"email", "tenant_id"}
    # Audit rows are inserted with the server's clock: every column but created_at.
    assert {c for t, c in scratch.column_grants("INSERT") if t == "audit_logs"} == {
        "id",
        "tenant_id",
        "user_id",
        "action",
        "resource_type",
        "resource_id",
        "details",
        "ip_address",
    }
    assert scratch.column_grants("UPDATE") == {
        ("tenants", "name"),
        ("tenants", "settings"),
        ("tenant_admins", "full_name"),
        ("tenant_admins", "role"),
        ("tenant_admins", "is_active"),
        *(
            ("auth_sessions", column)
            for column in (
                "refresh_jti",
                "previous_refresh_jti",
                "rotated_at",
                "last_used_at",
                "expires_at",
                "revoked_at",
                "revoked_reason",
            )
        ),
    }
    assert ("tenant_admins", "password_hash") not in scratch.column_grants("SELECT")
    assert ("tenant_admins", "email") in scratch.column_grants("SELECT")


def assert_rls_off(scratch: Scratch) -> None:
    rls = scratch.rls()
    for table in TABLES_OF_0005:
        assert rls[table] == (False, False), f"RLS still on for {table}"
    assert scratch.policies() == set()
    assert scratch.grants() == set()


def assert_empty(scratch: Scratch) -> None:
    assert scratch.tables() == {"alembic_version"}
    assert scratch.version() == []
    assert scratch.enum_types() == set()
    assert not (FUNCTIONS | FUNCTIONS_OF_0004) & scratch.functions()
    assert scratch.triggers() == set()
    assert scratch.policies() == set()
    # The schema owner may not drop roles (no CREATEROLE): the request role stays,
    # as the operators' set-up made it.
    assert scratch.role_exists()


def insert_tenants(scratch: Scratch, *slugs: str) -> None:
    """Tenants by raw SQL, each with its slug registered first (wafaa.models.registry)."""
    for slug in slugs:
        scratch.execute(
            "WITH registered AS (INSERT INTO tenant_slugs (slug, tenant_id) VALUES (%s, gen_random_uuid()) "
            "RETURNING slug, tenant_id) "
            "INSERT INTO tenants (id, name, slug) SELECT tenant_id, %s, slug FROM registered",
            [slug, slug.title()],
        )


# --- the tests ------------------------------------------------------------------------------


def test_upgrade_builds_everything(scratch):
    scratch.flask_db("downgrade", "base")  # whatever an earlier test left
    elapsed = scratch.upgrade()
    print(f"\nflask db upgrade (empty -> {HEAD}) took {elapsed:.2f} s")
    assert_fully_built(scratch)


def test_downgrade_base_removes_everything(scratch):
    scratch.upgrade()
    scratch.flask_db("downgrade", "base")
    assert_empty(scratch)


def test_upgrade_again_after_downgrade_rebuilds_the_identical_schema(scratch):
    scratch.upgrade()
    first = scratch.snapshot()
    scratch.flask_db("downgrade", "base")
    assert_empty(scratch)
    elapsed = scratch.upgrade()
    print(f"\nflask db upgrade after downgrade took {elapsed:.2f} s")
    assert_fully_built(scratch)
    assert scratch.snapshot() == first


def test_upgrade_is_idempotent_at_head(scratch):
    scratch.upgrade()
    before = scratch.snapshot()
    scratch.upgrade()
    assert scratch.version() == [HEAD]
    assert scratch.snapshot() == before


def test_downgrade_of_0003_removes_row_level_security_and_keeps_the_data(scratch):
    scratch.upgrade()
    insert_tenants(scratch, "kept")

    scratch.flask_db("downgrade", "0002_auth_sessions")

    assert scratch.version() == ["0002_auth_sessions"]
    assert scratch.tables() == TABLES_OF_0005 | {"alembic_version"}
    assert_rls_off(scratch)
    assert scratch.query("SELECT slug FROM tenants") == [("kept",)]

    scratch.upgrade()
    assert_fully_built(scratch)
    assert scratch.query("SELECT slug FROM tenants") == [("kept",)]
    scratch.execute("TRUNCATE tenants CASCADE")


def test_downgrade_step_by_step_reaches_base(scratch):
    scratch.upgrade()
    scratch.flask_db("downgrade")  # one step: the default revision is -1
    assert scratch.version() == ["0007_readiness"]
    assert not {"tenant_slugs", "admin_emails"} & scratch.tables()
    assert "wafaa_login" in scratch.functions()
    scratch.flask_db("downgrade")
    assert scratch.version() == ["0006_abuse_hardening"]
    assert ("alembic_version", "SELECT") not in scratch.grants()
    scratch.flask_db("downgrade")
    assert scratch.version() == ["0005_isolation_by_structure"]
    assert "login_throttles" not in scratch.tables()
    assert "wafaa_login" in scratch.functions()
    scratch.flask_db("downgrade")
    assert scratch.version() == ["0004_hot_paths"]
    assert FUNCTIONS_OF_0004 <= scratch.functions()
    assert "wafaa_private" not in {r[0] for r in scratch.query("SELECT nspname FROM pg_namespace")}
    scratch.flask_db("downgrade")
    assert scratch.version() == ["0003_row_level_security"]
    assert not (FUNCTIONS_OF_0004 - {"wafaa_set_updated_at"}) & scratch.functions()
    scratch.flask_db("downgrade")
    assert scratch.version() == ["0002_auth_sessions"]
    scratch.flask_db("downgrade")  # one step: the default revision is -1
    assert scratch.version() == ["0001_initial_schema"]
    assert "auth_sessions" not in scratch.tables()
    assert {"tenants", "tenant_admins", "audit_logs"} <= scratch.tables()
    scratch.flask_db("downgrade")  # one step: the default revision is -1
    assert_empty(scratch)


def test_rls_is_enforced_for_the_request_role_after_upgrade(scratch):
    # Not only declared: the request role sees nothing without a tenant setting,
    # and only its tenant's rows with one.
    scratch.upgrade()
    insert_tenants(scratch, "tenant-a", "tenant-b")
    tenant_a = scratch.query("SELECT id FROM tenants WHERE slug = 'tenant-a'")[0][0]
    try:
        with psycopg.connect(scratch.url) as conn:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(scratch.role)))
            assert conn.execute("SELECT slug FROM tenants").fetchall() == []
            # A tenant set by hand binds nothing...
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_a)])
            assert conn.execute("SELECT slug FROM tenants").fetchall() == []
            conn.rollback()
            # ...one bound by the owner's function does.
            conn.execute("SELECT wafaa_private.bind_tenant(%s)", [tenant_a])
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(scratch.role)))
            assert conn.execute("SELECT slug FROM tenants").fetchall() == [("tenant-a",)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM tenants")
            conn.rollback()
    finally:
        scratch.execute("TRUNCATE tenants CASCADE")


def not_alembic_version(obj, name, type_, reflected, compare_to) -> bool:
    # Alembic's bookkeeping table is not part of the models (as in migrations/env.py).
    return not (type_ == "table" and name == "alembic_version")


def test_autogenerate_finds_no_difference_between_models_and_migrations(scratch):
    scratch.upgrade()
    with (
        scratch.app.app_context(),
        system_scope("autogenerate comparison"),
        engine_for(current_scope()).connect() as connection,
    ):
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_object": not_alembic_version,
            },
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == [], "models and migrations differ:\n" + "\n".join(map(str, diff))


def test_the_database_functions_are_todays_files(scratch):
    """wafaa/sql holds today's body of every function: applying the files again
    at head changes nothing (a changed file needs a migration that applies it)."""
    scratch.upgrade()
    definitions = (
        "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('public', 'wafaa_private') ORDER BY 1"
    )
    with psycopg.connect(scratch.url) as conn:
        before = conn.execute(definitions).fetchall()
        conn.execute("SET LOCAL ROLE wafaa_owner")
        for path in sorted(SQL_DIR.glob("*.sql")):
            conn.execute(path.read_text())
        assert conn.execute(definitions).fetchall() == before
        conn.rollback()
