"""Login sessions (refresh-token families).

Revision ID: 0002_auth_sessions
Revises: 0001_initial_schema
Create Date: 2026-11-26

`auth_sessions` has one row per login. It holds the jti of the one refresh token
that may be used next (`refresh_jti`) and the one it replaced
(`previous_refresh_jti`, accepted again only within the reuse grace window), its
expiry, and its revocation. Every request checks its token's session here, so
revoking the row ends its access and refresh tokens at once in every worker.

The composite foreign key `(tenant_id, admin_id)` guarantees a session's admin
belongs to the session's tenant; deleting the admin or the tenant deletes their
sessions.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_auth_sessions"
down_revision = "0001_initial_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("admin_id", sa.UUID(), nullable=False),
        sa.Column("refresh_jti", sa.String(64), nullable=False),
        sa.Column("previous_refresh_jti", sa.String(64), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
        sa.Column("ip_address", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_sessions"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_auth_sessions_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "admin_id"],
            ["tenant_admins.tenant_id", "tenant_admins.id"],
            name="fk_auth_sessions_tenant_id_admin_id_tenant_admins",
            ondelete="CASCADE",
        ),
    )
    # "The sessions of this admin": listing, logout everywhere, deactivation.
    op.create_index("ix_auth_sessions_tenant_id_admin_id", "auth_sessions", ["tenant_id", "admin_id"])


def downgrade() -> None:
    op.drop_table("auth_sessions")
