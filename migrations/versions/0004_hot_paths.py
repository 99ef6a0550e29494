"""The statements on the hot paths, as database functions, and an index.

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
4. `wafaa_start_session(...)`: a successful login, as the request role in the
   account's tenant. It locks the account and checks again what may have changed
   during the password check (the password, the active flags, a lock by
   concurrent failures); then writes `last_login`, the re-hashed password if
   any, the new session and its `auth.login` audit row: one statement, so one
   transaction and one round trip after the password check.
5. A partial index of failed logins of one account, by time, for that count.

Only the owner may execute 1, 2 and 4 (EXECUTE is revoked from PUBLIC).

Downgrade drops the functions and the index.
"""

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0004_hot_paths"
down_revision = "0003_row_level_security"
branch_labels = None
depends_on = None

# The functions that set the role and tenant of the transaction they run in.
OWNER_ONLY = (
    "wafaa_start_session(uuid, uuid, text, text, integer, interval, uuid, text, interval, text, text, jsonb)",
    "wafaa_login_candidate(text, interval)",
    "wafaa_request_identity(uuid, uuid, uuid)",
)


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
    op.execute(
        f"""
        CREATE FUNCTION wafaa_start_session(
            p_tenant uuid, p_admin uuid, p_checked_hash text, p_new_hash text,
            p_threshold integer, p_window interval,
            p_session uuid, p_refresh_jti text, p_lifetime interval,
            p_ip text, p_user_agent text, p_details jsonb
        )
        RETURNS TABLE (outcome text, expires_at timestamptz)
        LANGUAGE plpgsql
        SECURITY INVOKER
        SET search_path = public, pg_temp
        AS $$
        DECLARE
            v_hash text;
            v_active boolean;
        BEGIN
            PERFORM set_config('role', '{role}', true),
                    set_config('app.tenant_id', p_tenant::text, true);
            -- The account may have changed during the password check: lock it,
            -- then look again (each statement of this VOLATILE function sees what
            -- was committed before it began).
            SELECT a.password_hash, a.is_active AND t.is_active INTO v_hash, v_active
            FROM tenant_admins a JOIN tenants t ON t.id = a.tenant_id
            WHERE a.tenant_id = p_tenant AND a.id = p_admin
            FOR UPDATE OF a;
            IF v_hash IS DISTINCT FROM p_checked_hash THEN
                RETURN QUERY SELECT 'password_changed'::text, NULL::timestamptz;
                RETURN;
            END IF;
            IF NOT v_active THEN
                RETURN QUERY SELECT 'inactive'::text, NULL::timestamptz;
                RETURN;
            END IF;
            IF wafaa_recent_login_failures(p_tenant, p_admin, p_window) >= p_threshold THEN
                RETURN QUERY SELECT 'locked'::text, NULL::timestamptz;
                RETURN;
            END IF;
            UPDATE tenant_admins
            SET last_login = now(), password_hash = coalesce(p_new_hash, password_hash)
            WHERE tenant_id = p_tenant AND id = p_admin;
            INSERT INTO auth_sessions
                (id, tenant_id, admin_id, refresh_jti, last_used_at, expires_at, ip_address, user_agent)
            VALUES (p_session, p_tenant, p_admin, p_refresh_jti, now(), now() + p_lifetime, p_ip, p_user_agent);
            INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id, details, ip_address)
            VALUES (p_tenant, p_admin, 'auth.login', 'session', p_session::text, p_details, p_ip);
            RETURN QUERY SELECT 'started'::text, now() + p_lifetime;
        END
        $$
        """
    )
    # Only the owner (the app's connecting role) calls them. The request role must
    # not: they set the role and the tenant of the transaction they run in.
    for signature in OWNER_ONLY:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {signature} FROM PUBLIC")
    op.create_index(
        "ix_audit_logs_tenant_id_resource_id_created_at_login_failed",
        "audit_logs",
        ["tenant_id", "resource_id", "created_at"],
        postgresql_where=sa.text("action = 'auth.login_failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_logs_tenant_id_resource_id_created_at_login_failed", table_name="audit_logs")
    for signature in (*OWNER_ONLY, "wafaa_recent_login_failures(uuid, uuid, interval)"):
        op.execute(f"DROP FUNCTION {signature}")
