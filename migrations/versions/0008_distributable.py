"""A schema Citus can distribute by tenant, the same on plain PostgreSQL.

Revision ID: 0008_distributable
Revises: 0007_readiness
Create Date: 2026-12-05

Citus splits a table into shards by a distribution column (`tenant_id`; `id` for
`tenants`) and can enforce a primary or unique key only when it includes that
column. So:

1. The primary keys of `tenant_admins`, `auth_sessions` and `audit_logs` become
   `(tenant_id, id)` (ids stay globally unique UUIDs). The composite foreign keys
   to an admin now point at `tenant_admins`' primary key (the separate unique
   `(tenant_id, id)` it replaces is dropped).
2. Global uniqueness moves to two registries, `tenant_slugs (slug PRIMARY KEY,
   tenant_id)` and `admin_emails (email PRIMARY KEY, tenant_id)`
   (wafaa.models.registry), replicated to every node on Citus (reference tables).
   `tenants (id, slug)` and `tenant_admins (tenant_id, email)` reference them, so a
   slug or an email in use is still refused by the database; emails stay unique
   within their tenant by `(tenant_id, email)`. Existing rows are registered here.
3. Both registries are under row-level security like the tenant tables: the request
   role reads and registers its own tenant's emails only (creating an admin), and
   reads nothing else of them; the owner sees everything in the system scope.
4. The database functions (wafaa/sql) set the tenant binding and `app.system` with
   `SET LOCAL`, which Citus sends on to the workers, and the binding's proof names
   the distributed transaction there (tenant_binding.sql); login finds an email's
   tenant in `admin_emails`, then reads the admin on that tenant's node (login.sql).

The `updated_at` triggers stay: they only stamp the row being written, which is
safe on a shard; distributing them (wafaa.citus) allows exactly that.

Downgrade restores the keys and constraints of 0007 and its functions.
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import op

from wafaa.schema_kit import CURRENT_TENANT, SYSTEM_ON, app_role, apply_sql

revision = "0008_distributable"
down_revision = "0007_readiness"
branch_labels = None
depends_on = None

# (table, name, columns, ondelete) of the composite foreign keys to an admin.
ADMIN_REFERENCES = (
    ("audit_logs", "fk_audit_logs_tenant_id_user_id_tenant_admins", ["tenant_id", "user_id"], "NO ACTION"),
    ("auth_sessions", "fk_auth_sessions_tenant_id_admin_id_tenant_admins", ["tenant_id", "admin_id"], "CASCADE"),
    ("login_throttles", "fk_login_throttles_tenant_id_admin_id_tenant_admins", ["tenant_id", "admin_id"], "CASCADE"),
)
KEYED_BY_TENANT = ("tenant_admins", "auth_sessions", "audit_logs")
NEW_FUNCTIONS = ("wafaa_private.transaction_identity()",)


def _admin_references(create: bool) -> None:
    for table, name, columns, ondelete in ADMIN_REFERENCES:
        if create:
            op.create_foreign_key(name, table, "tenant_admins", columns, ["tenant_id", "id"], ondelete=ondelete)
        else:
            op.drop_constraint(name, table, type_="foreignkey")


def _registry(table: str, value: str, length: int) -> None:
    op.create_table(
        table,
        sa.Column(value, sa.String(length), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint(value, name=f"pk_{table}"),
        sa.UniqueConstraint("tenant_id", value, name=f"uq_{table}_tenant_id_{value}"),
    )
    role = app_role()
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} TO {role} "
        f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
    )
    op.execute(f"CREATE POLICY system_access ON {table} TO CURRENT_USER USING ({SYSTEM_ON}) WITH CHECK ({SYSTEM_ON})")
    op.execute(f"GRANT SELECT ON {table} TO {role}")


def upgrade() -> None:
    _registry("tenant_slugs", "slug", 100)
    _registry("admin_emails", "email", 255)
    op.execute(f"GRANT INSERT (email, tenant_id) ON admin_emails TO {app_role()}")
    op.execute("INSERT INTO tenant_slugs (slug, tenant_id) SELECT slug, id FROM tenants")
    op.execute("INSERT INTO admin_emails (email, tenant_id) SELECT email, tenant_id FROM tenant_admins")

    op.drop_constraint("uq_tenants_slug", "tenants", type_="unique")
    op.create_foreign_key(
        "fk_tenants_id_slug_tenant_slugs", "tenants", "tenant_slugs", ["id", "slug"], ["tenant_id", "slug"]
    )
    op.drop_constraint("uq_tenant_admins_email", "tenant_admins", type_="unique")
    op.create_unique_constraint("uq_tenant_admins_tenant_id_email", "tenant_admins", ["tenant_id", "email"])
    op.create_foreign_key(
        "fk_tenant_admins_tenant_id_email_admin_emails",
        "tenant_admins",
        "admin_emails",
        ["tenant_id", "email"],
        ["tenant_id", "email"],
    )

    _admin_references(create=False)
    op.drop_constraint("uq_tenant_admins_tenant_id_id", "tenant_admins", type_="unique")
    for table in KEYED_BY_TENANT:
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, ["tenant_id", "id"])
    _admin_references(create=True)

    apply_sql("tenant_binding.sql", "request_identity.sql", "login.sql")  # CREATE OR REPLACE: the grants stay


def downgrade() -> None:
    versions = Path(__file__).with_name("sql")
    apply_sql("0005_tenant_binding.sql", "0005_request_identity.sql", "0007_login.sql", directory=versions)
    for signature in NEW_FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")

    _admin_references(create=False)
    for table in KEYED_BY_TENANT:
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, ["id"])
    op.create_unique_constraint("uq_tenant_admins_tenant_id_id", "tenant_admins", ["tenant_id", "id"])
    _admin_references(create=True)

    op.drop_constraint("fk_tenant_admins_tenant_id_email_admin_emails", "tenant_admins", type_="foreignkey")
    op.drop_constraint("uq_tenant_admins_tenant_id_email", "tenant_admins", type_="unique")
    op.create_unique_constraint("uq_tenant_admins_email", "tenant_admins", ["email"])
    op.drop_constraint("fk_tenants_id_slug_tenant_slugs", "tenants", type_="foreignkey")
    op.create_unique_constraint("uq_tenants_slug", "tenants", ["slug"])
    op.drop_table("admin_emails")
    op.drop_table("tenant_slugs")
