"""Migration helpers: a tenant-owned table in one call, and the database functions
applied from their current files.

A new tenant-owned table (README, "Adding a tenant-owned resource"):

    op.create_table("documents", ...)          # with a tenant_id column
    make_tenant_owned(
        "documents",
        select=ALL, insert=ALL, update=("title", "body"), delete=True,
        references={"author_id": "tenant_admins"},
        indexes=[("created_at",)],
    )

does every step isolation needs: composite foreign keys `(tenant_id, column)`
(a row can only point at rows of its own tenant), indexes that lead with
`tenant_id`, row-level security enabled and forced, the two policies, and the
request role's privileges, column by column where not every column may be
written. `wafaa.schema_check` (run by the test suite and /readyz-style checks)
fails for any tenant-scoped model whose table lacks one of these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from alembic import op
from flask import current_app

SQL_DIR = Path(__file__).resolve().parent / "sql"
ALL = "ALL"
# The request role sees a row when its tenant is the transaction's bound tenant
# (wafaa/sql/tenant_binding.sql); the schema owner sees every row, but only in a
# transaction that declared itself system work (wafaa.tenancy.system_scope).
CURRENT_TENANT = "(SELECT wafaa_current_tenant())"
SYSTEM_ON = "current_setting('app.system', true) = 'on'"
POLICIES = ("tenant_isolation", "system_access")

Columns = Sequence[str] | str


def app_role() -> str:
    # Validated as a plain identifier by config.py, so it is safe in SQL text.
    return current_app.config["DB_APP_ROLE"]


def _columns(columns: Columns) -> str:
    return "" if columns == ALL else f" ({', '.join(columns)})"


def _has_tenant_index(table: str, tenant_column: str) -> bool:
    return bool(
        op.get_bind()
        .exec_driver_sql(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = %(table)s::regclass AND a.attname = %(column)s",
            {"table": table, "column": tenant_column},
        )
        .first()
    )


def make_tenant_owned(
    table: str,
    *,
    select: Columns = ALL,
    insert: Columns = (),
    update: Columns = (),
    delete: bool = False,
    tenant_column: str = "tenant_id",
    references: Mapping[str, str] | None = None,
    indexes: Sequence[Sequence[str]] = (),
) -> None:
    """Make `table` tenant-owned. Idempotent for its policies and grants."""
    role = app_role()
    for column, target in (references or {}).items():
        # The target's (tenant_id, id) must be unique for the key to point at it.
        op.create_foreign_key(
            f"fk_{table}_{tenant_column}_{column}_{target}",
            table,
            target,
            [tenant_column, column],
            ["tenant_id", "id"],
            ondelete="CASCADE",
        )
    for columns in indexes:
        op.create_index(f"ix_{table}_{tenant_column}_{'_'.join(columns)}", table, [tenant_column, *columns])
    if not _has_tenant_index(table, tenant_column):
        op.create_index(f"ix_{table}_{tenant_column}", table, [tenant_column])

    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    for policy in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {policy} ON {table}")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} TO {role} "
        f"USING ({tenant_column} = {CURRENT_TENANT}) WITH CHECK ({tenant_column} = {CURRENT_TENANT})"
    )
    op.execute(f"CREATE POLICY system_access ON {table} TO CURRENT_USER USING ({SYSTEM_ON}) WITH CHECK ({SYSTEM_ON})")

    op.execute(f"REVOKE ALL ON {table} FROM {role}")
    for privilege, columns in (("SELECT", select), ("INSERT", insert), ("UPDATE", update)):
        if columns:
            op.execute(f"GRANT {privilege}{_columns(columns)} ON {table} TO {role}")
    if delete:
        op.execute(f"GRANT DELETE ON {table} TO {role}")


def undo_tenant_owned(table: str) -> None:
    """The reverse of make_tenant_owned's security steps (keys and indexes go with
    the table, or with the migration that created them)."""
    role = app_role()
    for policy in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {policy} ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON {table} FROM {role}")


def sql_file(name: str, directory: Path = SQL_DIR) -> str:
    return (directory / name).read_text()


def apply_sql(*names: str, directory: Path = SQL_DIR) -> None:
    """Run files of wafaa/sql (CREATE OR REPLACE ...): today's function bodies live
    there, and a migration that changes one applies the file again. Once a later
    migration changes a file, the earlier ones apply their frozen copy
    (migrations/versions/sql/), so that every revision still builds what it built."""
    for name in names:
        op.get_bind().exec_driver_sql(sql_file(name, directory))
