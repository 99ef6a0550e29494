"""Initial schema: tenants, tenant admins and the audit log.

Revision ID: 0001_initial_schema
Revises:
Create Date: 2026-11-26

Creates, in dependency order:

1. Two PostgreSQL enum types, `subscription_tier` and `admin_role`, so the
   database itself refuses a tier or role the application does not know.
2. `wafaa_set_updated_at()`, a trigger function that stamps `updated_at` on every
   UPDATE, including updates made with raw SQL that the ORM never sees.
3. `tenants`: one row per client business. The slug is unique, at most 100
   characters and URL-safe, checked here with the same pattern the API uses.
4. `tenant_admins`: each tenant's staff. Emails are unique across all tenants
   (login is by email alone) and stored normalised, which a CHECK enforces, so
   the plain unique constraint is case-insensitive. `(tenant_id, id)` is unique so
   that other tables can point at "this admin of this tenant" with one key.
5. `audit_logs`: append-only history. The actor, when present, must be an admin of
   the same tenant (composite foreign key).

Every tenant-owned table carries `tenant_id` with ON DELETE CASCADE (removing a
tenant removes its data) and indexes that lead with `tenant_id`, which is what
both the tenant filter and a future distribution by tenant (Citus) need.

Downgrade drops everything this revision created, enum types and function included.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_initial_schema"
down_revision = None
branch_labels = None
depends_on = None

SUBSCRIPTION_TIER = postgresql.ENUM("free", "basic", "premium", name="subscription_tier", create_type=False)
ADMIN_ROLE = postgresql.ENUM("owner", "admin", "viewer", name="admin_role", create_type=False)
EMPTY_JSONB = sa.text("'{}'::jsonb")
SLUG_PATTERN = "^[a-z0-9]+(-[a-z0-9]+)*$"


def _id() -> sa.Column:
    return sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def _updated_at_trigger(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_set_updated_at BEFORE UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION wafaa_set_updated_at()"
    )


def upgrade() -> None:
    # 1. Enum types, created explicitly (create_type=False above) so that the
    #    downgrade can drop them explicitly too.
    SUBSCRIPTION_TIER.create(op.get_bind())
    ADMIN_ROLE.create(op.get_bind())

    # 2. updated_at maintenance for every table that has the column.
    op.execute(
        """
        CREATE FUNCTION wafaa_set_updated_at() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END
        $$
        """
    )

    # 3. Tenants.
    op.create_table(
        "tenants",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("subscription_tier", SUBSCRIPTION_TIER, server_default="free", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("settings", postgresql.JSONB(), server_default=EMPTY_JSONB, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("slug", name="uq_tenants_slug"),
        sa.CheckConstraint(f"slug ~ '{SLUG_PATTERN}'", name="ck_tenants_slug_format"),
        sa.CheckConstraint("length(btrim(name)) > 0", name="ck_tenants_name_not_blank"),
        sa.CheckConstraint("jsonb_typeof(settings) = 'object'", name="ck_tenants_settings_is_object"),
    )
    _updated_at_trigger("tenants")

    # 4. Tenant admins.
    op.create_table(
        "tenant_admins",
        _id(),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("full_name", sa.String(255), nullable=False),
        sa.Column("role", ADMIN_ROLE, nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_login", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_tenant_admins"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_tenant_admins_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("email", name="uq_tenant_admins_email"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_tenant_admins_tenant_id_id"),
        sa.CheckConstraint("email = lower(btrim(email))", name="ck_tenant_admins_email_normalized"),
        sa.CheckConstraint("position('@' in email) > 1", name="ck_tenant_admins_email_has_at"),
        sa.CheckConstraint("length(btrim(full_name)) > 0", name="ck_tenant_admins_full_name_not_blank"),
    )
    # Listing a tenant's admins in creation order.
    op.create_index("ix_tenant_admins_tenant_id_created_at", "tenant_admins", ["tenant_id", "created_at"])
    _updated_at_trigger("tenant_admins")

    # 5. Audit log. created_at uses clock_timestamp() so that the rows one
    #    transaction writes keep their order (now() is fixed per transaction).
    op.create_table(
        "audit_logs",
        _id(),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource_type", sa.String(50), nullable=False),
        sa.Column("resource_id", sa.String(100), nullable=True),
        sa.Column("details", postgresql.JSONB(), server_default=EMPTY_JSONB, nullable=False),
        sa.Column("ip_address", sa.String(45), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_logs"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_audit_logs_tenant_id_tenants", ondelete="CASCADE"
        ),
        # NO ACTION is checked at the end of the statement: deleting a tenant
        # removes its admins and its audit rows together, but an admin alone can
        # never be deleted while audit rows name them.
        sa.ForeignKeyConstraint(
            ["tenant_id", "user_id"],
            ["tenant_admins.tenant_id", "tenant_admins.id"],
            name="fk_audit_logs_tenant_id_user_id_tenant_admins",
            ondelete="NO ACTION",
        ),
    )
    # The audit endpoint reads a tenant's log newest first, by time window.
    op.create_index("ix_audit_logs_tenant_id_created_at", "audit_logs", ["tenant_id", "created_at"])


def downgrade() -> None:
    # Reverse order of creation; dropping a table drops its indexes, constraints
    # and triggers with it.
    op.drop_table("audit_logs")
    op.drop_table("tenant_admins")
    op.drop_table("tenants")
    op.execute("DROP FUNCTION wafaa_set_updated_at()")
    ADMIN_ROLE.drop(op.get_bind())
    SUBSCRIPTION_TIER.drop(op.get_bind())
