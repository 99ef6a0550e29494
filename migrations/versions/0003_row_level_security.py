"""Row-level security: the database enforces tenant isolation too.

Revision ID: 0003_row_level_security
Revises: 0002_auth_sessions
Create Date: 2026-11-26

The ORM adds a tenant filter to every query (wafaa.tenancy); this revision makes
PostgreSQL enforce the same rule underneath, so raw SQL, Core statements or a
missed filter still cannot reach another tenant's rows.

1. The request role (DB_APP_ROLE, `wafaa_app` by default) is created if missing:
   NOLOGIN, not superuser, no BYPASSRLS, owns nothing. Every request transaction
   switches to it with `SET LOCAL ROLE` (as PostgREST does), so policies apply
   even when DATABASE_URL names a superuser. It is granted to the migrating role
   so that a non-superuser owner may switch to it.
2. The role gets only what requests need: tenants SELECT/UPDATE; admins and
   sessions SELECT/INSERT/UPDATE (admins are deactivated, never deleted); audit
   logs SELECT/INSERT, which makes the audit log append-only for the app.
3. RLS is enabled and FORCEd on every tenant table (FORCE: the owner is subject
   to it as well), with two policies:
   * `tenant_isolation` (the request role): rows whose tenant is the
     transaction-local setting `app.tenant_id`. No setting, no rows; an INSERT or
     UPDATE that would put a row into another tenant fails WITH CHECK.
   * `system_access` (the migrating role): everything, but only in a transaction
     that set `app.system = on` (the system scope: CLI, migrations, the login
     lookup by email). A superuser bypasses RLS anyway; this is for deployments
     whose tables are owned by an ordinary role.
   Both settings are set with set_config(..., true): they end with the transaction
   and never survive on a pooled connection.

Downgrade removes the policies, RLS and the grants. It drops the role unless
another database of the cluster still uses it (roles are cluster-wide) or the
migrating role may not drop roles.
"""

from alembic import op
from flask import current_app

revision = "0003_row_level_security"
down_revision = "0002_auth_sessions"
branch_labels = None
depends_on = None

# Table -> (the column naming the row's tenant, what the request role may do).
TENANT_TABLES = {
    "tenants": ("id", "SELECT, UPDATE"),
    "tenant_admins": ("tenant_id", "SELECT, INSERT, UPDATE"),
    "auth_sessions": ("tenant_id", "SELECT, INSERT, UPDATE"),
    "audit_logs": ("tenant_id", "SELECT, INSERT"),
}
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
SYSTEM_ON = "current_setting('app.system', true) = 'on'"


def _role() -> str:
    # Validated as a plain identifier by config.py, so it is safe to interpolate.
    return current_app.config["DB_APP_ROLE"]


def upgrade() -> None:
    role = _role()
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
            END IF;
        EXCEPTION WHEN duplicate_object THEN
            NULL;  -- created concurrently by a migration of another database
        END
        $$
        """
    )
    # Membership lets a non-superuser owner switch to the role. Granted only when
    # missing: an owner without CREATEROLE cannot grant it, but a DBA may already
    # have (README, "Running in production").
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
                GRANT {role} TO CURRENT_USER;
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    for table, (tenant_column, privileges) in TENANT_TABLES.items():
        op.execute(f"GRANT {privileges} ON {table} TO {role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {role} "
            f"USING ({tenant_column} = {CURRENT_TENANT}) WITH CHECK ({tenant_column} = {CURRENT_TENANT})"
        )
        op.execute(
            f"CREATE POLICY system_access ON {table} TO CURRENT_USER USING ({SYSTEM_ON}) WITH CHECK ({SYSTEM_ON})"
        )


def downgrade() -> None:
    role = _role()
    for table in reversed(TENANT_TABLES):
        op.execute(f"DROP POLICY system_access ON {table}")
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {role}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
    op.execute(
        f"""
        DO $$
        BEGIN
            DROP ROLE IF EXISTS {role};
        EXCEPTION
            WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'role {role} is still used by another database; kept';
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role {role} kept: dropping it needs CREATEROLE';
        END
        $$
        """
    )
