"""Isolation by structure: an unforgeable tenant binding, least privilege for the
request role, and the database functions applied from wafaa/sql.

Revision ID: 0005_isolation_by_structure
Revises: 0004_hot_paths
Create Date: 2026-12-02

Run as the schema owner (MIGRATION_DATABASE_URL); the service logs in as a role
that owns nothing (wafaa.db_roles, docs/isolation.md).

1. `wafaa_private`, a schema only the owner can use, holds the binding key (two
   random 512-bit keys, made here, never leaving the database) and the functions
   that use it.
2. The tenant binding (wafaa/sql/tenant_binding.sql): row-level security now
   trusts `wafaa_current_tenant()`, which accepts `app.tenant_id` only with a
   proof made by `wafaa_bind_session` (a live session) or by the owner. Setting
   `app.tenant_id` by hand binds nothing.
3. The hot paths of 0004 are replaced (wafaa/sql/request_identity.sql,
   login.sql): SECURITY DEFINER, search_path pinned, arguments checked; the
   identity returns the tenant row whole; login compares the password hash inside
   the database, which gives out only the bcrypt salt.
4. The four tables are made tenant-owned again with wafaa.schema_kit: the same
   policies on the new binding, and privileges column by column: nothing of
   `id`, `tenant_id`, `created_at`, `password_hash`, `subscription_tier` or
   `slug` is updatable by the request role, `password_hash` is not even
   readable, `auth_sessions` rows are created only by the login function, and the
   audit log is insert-only.
5. EXECUTE on functions is no longer granted to PUBLIC, now or by default for
   functions the owner creates later; the request role may execute exactly the
   functions the service calls.

Downgrade drops what this revision made and rebuilds the state of 0004.
"""

import importlib.util
from pathlib import Path

from alembic import op

from wafaa.schema_kit import ALL, app_role, apply_sql, make_tenant_owned, undo_tenant_owned

revision = "0005_isolation_by_structure"
down_revision = "0004_hot_paths"
branch_labels = None
depends_on = None

OLD_FUNCTIONS = (
    "wafaa_start_session(uuid, uuid, text, text, integer, interval, uuid, text, interval, text, text, jsonb)",
    "wafaa_login_candidate(text, interval)",
    "wafaa_request_identity(uuid, uuid, uuid)",
    "wafaa_recent_login_failures(uuid, uuid, interval)",
)
# What the service calls: the policies' tenant, the binding of a request's
# transaction, and the two hot paths.
SERVICE_FUNCTIONS = (
    "wafaa_current_tenant()",
    "wafaa_bind_session(uuid, uuid, uuid)",
    "wafaa_request_identity(uuid, uuid, uuid)",
    "wafaa_login_salt(text, integer)",
    "wafaa_login(text, text, text, integer, interval, uuid, text, interval, text, text, jsonb)",
)
NEW_FUNCTIONS = (
    *SERVICE_FUNCTIONS,
    "wafaa_private.recent_login_failures(uuid, uuid, interval)",
    "wafaa_private.bind_tenant(uuid)",
    "wafaa_private.tenant_proof(uuid)",
    "wafaa_private.mac(text)",
)

ADMIN_READABLE = (
    "id",
    "tenant_id",
    "email",
    "full_name",
    "role",
    "is_active",
    "last_login",
    "created_at",
    "updated_at",
)
AUDIT_INSERTABLE = ("id", "tenant_id", "user_id", "action", "resource_type", "resource_id", "details", "ip_address")
SESSION_UPDATABLE = (
    "refresh_jti",
    "previous_refresh_jti",
    "rotated_at",
    "last_used_at",
    "expires_at",
    "revoked_at",
    "revoked_reason",
)


def upgrade() -> None:
    role = app_role()
    # Functions made from now on by the owner are nobody else's to run unless
    # granted (PostgreSQL's default grants EXECUTE to PUBLIC).
    op.execute("ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")

    op.execute("CREATE SCHEMA wafaa_private")
    op.execute("REVOKE ALL ON SCHEMA wafaa_private FROM PUBLIC")
    op.execute(
        """
        CREATE TABLE wafaa_private.binding_key (
            inner_key bytea NOT NULL CHECK (length(inner_key) = 64),
            outer_key bytea NOT NULL CHECK (length(outer_key) = 64),
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row)
        )
        """
    )
    # gen_random_uuid() draws from the server's strong random source: four of
    # them (488 random bits) through SHA-512 make each key.
    op.execute(
        """
        INSERT INTO wafaa_private.binding_key (inner_key, outer_key)
        SELECT sha512(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                 || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')),
               sha512(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                 || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'))
        """
    )

    for signature in OLD_FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    # The functions as they were at this revision (later ones changed them).
    apply_sql(
        "0005_tenant_binding.sql",
        "0005_request_identity.sql",
        "0005_login.sql",
        directory=Path(__file__).with_name("sql"),
    )

    make_tenant_owned("tenants", tenant_column="id", select=ALL, update=("name", "settings"))
    make_tenant_owned(
        "tenant_admins",
        select=ADMIN_READABLE,
        insert=("id", "tenant_id", "email", "full_name", "role", "is_active", "last_login", "password_hash"),
        update=("full_name", "role", "is_active"),
    )
    make_tenant_owned("auth_sessions", select=ALL, update=SESSION_UPDATABLE)
    # created_at is the server's clock: a row dated in the future would count
    # as a recent failed login for ever.
    make_tenant_owned("audit_logs", select=ALL, insert=AUDIT_INSERTABLE)

    op.execute(
        """
        DO $$
        DECLARE
            f regprocedure;
        BEGIN
            FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname IN ('public', 'wafaa_private') LOOP
                EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
            END LOOP;
        END
        $$
        """
    )
    for signature in SERVICE_FUNCTIONS:
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {role}")


def _revision(name: str):
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"wafaa_migration_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    for table in ("audit_logs", "auth_sessions", "tenant_admins", "tenants"):
        undo_tenant_owned(table)
    for signature in NEW_FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute("DROP SCHEMA wafaa_private CASCADE")
    op.execute("ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION wafaa_set_updated_at() TO PUBLIC")
    # The state of 0004, rebuilt by the revisions that made it (their index and
    # role are still there: drop the one, the other is created only if missing).
    op.drop_index("ix_audit_logs_tenant_id_resource_id_created_at_login_failed", table_name="audit_logs")
    _revision("0003_row_level_security").upgrade()
    _revision("0004_hot_paths").upgrade()
