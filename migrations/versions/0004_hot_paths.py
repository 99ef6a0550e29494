"""The two queries on the hot paths, as database functions, and the index of one.

Revision ID: 0004_hot_paths
Revises: 0003_row_level_security
Create Date: 2026-11-26

Every authenticated request checks its token's session (is it live, are its
admin and tenant active?) and every login looks its account up by email. Through
the ORM each took three round trips (BEGIN with the transaction's settings, the
query, the end of the transaction) and a fresh plan; as functions each is one
prepared statement in one round trip, and PL/pgSQL keeps its plan.
docs/performance.md has the figures. Both are SECURITY INVOKER: they run with the
privileges of their caller and set, for their own transaction only, the same
settings a transaction of that scope sets (wafaa.tenancy). Called outside an
explicit transaction, those settings end with the statement.

1. `wafaa_request_identity(tenant, session, admin)`: switches to the request role
   and the token's tenant, then reads the session, the admin and the tenant, so
   its query runs under row-level security like every request query (and names
   the tenant itself as well).
2. `wafaa_login_candidate(email, window)`: the one cross-tenant read of the API.
   In the system scope (`app.system`), it finds the admin by email: their id,
   tenant, password hash, whether they and their tenant are active, and their
   recent failed logins (for the lockout).
3. `wafaa_recent_login_failures(tenant, admin, window)`: the one definition of
   that count, also used by the failure path (wafaa.services.sessions). Failed
   logins within the window, not counting refusals of a locked account. It reads
   with the privileges and the row-level security of its caller.
4. A partial index of failed logins of one account, by time, for that count.

Only the owner may execute the first two (EXECUTE is revoked from PUBLIC).

Downgrade drops the functions and the index.
"""

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0004_hot_paths"
down_revision = "0003_row_level_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The role name is validated as a plain identifier by config.py.
    role = current_app.config["DB_APP_ROLE"]
    op.execute(
        f"""
        CREATE FUNCTION wafaa_request_identity(p_tenant uuid, p_session uuid, p_admin uuid)
        RETURNS TABLE (
            refresh_jti varchar, expires_at timestamptz,
            email varchar, full_name varchar, role text,
            name varchar, slug varchar, subscription_tier text, is_active boolean, settings jsonb,
            created_at timestamptz, updated_at timestamptz
        )
        LANGUAGE plpgsql
        SECURITY INVOKER
        SET search_path = public, pg_temp
        AS $$
        BEGIN
            PERFORM set_config('role', '{role}', true),
                    set_config('app.tenant_id', p_tenant::text, true);
            RETURN QUERY
            SELECT s.refresh_jti, s.expires_at,
                   a.email, a.full_name, a.role::text,
                   t.name, t.slug, t.subscription_tier::text, t.is_active, t.settings,
                   t.created_at, t.updated_at
            FROM auth_sessions s
            JOIN tenant_admins a ON a.tenant_id = s.tenant_id AND a.id = s.admin_id
            JOIN tenants t ON t.id = s.tenant_id
            WHERE s.tenant_id = p_tenant AND s.id = p_session AND s.admin_id = p_admin
              AND s.revoked_at IS NULL AND s.expires_at > now()
              AND a.is_active AND t.is_active;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION wafaa_recent_login_failures(p_tenant uuid, p_admin uuid, p_window interval)
        RETURNS bigint
        LANGUAGE sql
        STABLE
        SECURITY INVOKER
        SET search_path = public, pg_temp
        AS $$
            SELECT count(*) FROM audit_logs
            WHERE tenant_id = p_tenant AND action = 'auth.login_failed'
              AND resource_id = p_admin::text AND created_at > now() - p_window
              AND details ->> 'reason' IS DISTINCT FROM 'locked'
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION wafaa_login_candidate(p_email text, p_window interval)
        RETURNS TABLE (
            admin_id uuid, tenant_id uuid, password_hash varchar, can_log_in boolean, recent_failures bigint
        )
        LANGUAGE plpgsql
        SECURITY INVOKER
        SET search_path = public, pg_temp
        AS $$
        BEGIN
            PERFORM set_config('app.system', 'on', true);
            RETURN QUERY
            SELECT a.id, a.tenant_id, a.password_hash, a.is_active AND t.is_active,
                   wafaa_recent_login_failures(a.tenant_id, a.id, p_window)
            FROM tenant_admins a
            JOIN tenants t ON t.id = a.tenant_id
            WHERE a.email = p_email;
        END
        $$
        """
    )
    # Only the owner (the app's connecting role) calls them. The request role must
    # not: the identity function could re-point its transaction's tenant.
    op.execute("REVOKE EXECUTE ON FUNCTION wafaa_request_identity(uuid, uuid, uuid) FROM PUBLIC")
    op.execute("REVOKE EXECUTE ON FUNCTION wafaa_login_candidate(text, interval) FROM PUBLIC")
    op.create_index(
        "ix_audit_logs_tenant_id_resource_id_created_at_login_failed",
        "audit_logs",
        ["tenant_id", "resource_id", "created_at"],
        postgresql_where=sa.text("action = 'auth.login_failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_logs_tenant_id_resource_id_created_at_login_failed", table_name="audit_logs")
    op.execute("DROP FUNCTION wafaa_login_candidate(text, interval)")
    op.execute("DROP FUNCTION wafaa_recent_login_failures(uuid, uuid, interval)")
    op.execute("DROP FUNCTION wafaa_request_identity(uuid, uuid, uuid)")
