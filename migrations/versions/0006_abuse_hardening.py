"""Login throttling per account and source, collapsed failure rows in the audit log.

Revision ID: 0006_abuse_hardening
Revises: 0005_isolation_by_structure
Create Date: 2026-12-02

1. `login_throttles`, tenant-owned (wafaa.schema_kit): wrong passwords of one
   account from one source (address, or IPv6 network) and when the last came.
   The login function keeps it; the request role may only read its tenant's rows.
2. `wafaa_login` (wafaa/sql/login.sql) throttles per account and source with a
   growing delay instead of locking the account for everyone, and records
   repeated identical failures as one audit row with a count. It takes the source
   and the throttle's base delay, so its signature changes: the old one is
   dropped, with the per-account failure count it used.

Downgrade restores the functions of 0005 (their frozen copy) and drops the table.
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from wafaa.schema_kit import ALL, app_role, apply_sql, make_tenant_owned

revision = "0006_abuse_hardening"
down_revision = "0005_isolation_by_structure"
branch_labels = None
depends_on = None

OLD_LOGIN = "wafaa_login(text, text, text, integer, interval, uuid, text, interval, text, text, jsonb)"
NEW_LOGIN = "wafaa_login(text, text, text, integer, interval, interval, uuid, text, interval, text, text, text, jsonb)"


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("admin_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("source", sa.String(49), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "admin_id", "source", name="pk_login_throttles"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name="fk_login_throttles_tenant_id_tenants"
        ),
    )
    make_tenant_owned("login_throttles", select=ALL, references={"admin_id": "tenant_admins"})

    op.execute(f"DROP FUNCTION {OLD_LOGIN}")
    op.execute("DROP FUNCTION wafaa_private.recent_login_failures(uuid, uuid, interval)")
    apply_sql("0006_login.sql", directory=Path(__file__).with_name("sql"))  # as 0006 wrote it
    op.execute(f"GRANT EXECUTE ON FUNCTION {NEW_LOGIN} TO {app_role()}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {NEW_LOGIN}")
    op.execute("DROP FUNCTION wafaa_private.record_login_failure(uuid, uuid, text, text, interval, text, jsonb)")
    apply_sql("0005_login.sql", directory=Path(__file__).with_name("sql"))
    op.execute(f"GRANT EXECUTE ON FUNCTION {OLD_LOGIN} TO {app_role()}")
    op.drop_table("login_throttles")
