"""Does every tenant-scoped table have every piece of its isolation and audit?

Walks the model registry (every `TenantScoped` model, and `Tenant`) and asks the
database, as it stands, for each table: row-level security enabled and forced,
the `tenant_isolation` policy (on the request role, comparing the tenant column
with the bound tenant) and the `system_access` policy, some privilege for the
request role, an index that leads with the tenant column, and foreign keys to
other tenant-owned tables that include the tenant column. From the model: an
audit declaration (`__audit_resource__`, or `__audit_exempt__` with a reason).

`problems()` returns one line per missing piece, naming the table; the test suite
fails on any (tests/test_schema_check.py), and so would a new table that skipped
a step of wafaa.schema_kit.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import Connection

from wafaa.models import Tenant, TenantScoped

_TABLE = text(
    """
    SELECT c.relrowsecurity, c.relforcerowsecurity,
           EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                   WHERE i.indrelid = c.oid AND a.attname = :tenant_column) AS tenant_index,
           has_any_column_privilege(:role, c.oid, 'SELECT') OR has_any_column_privilege(:role, c.oid, 'INSERT')
               OR has_any_column_privilege(:role, c.oid, 'UPDATE') OR has_table_privilege(:role, c.oid, 'DELETE')
               AS granted
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relname = :table
    """
)
_POLICIES = text(
    """
    SELECT policyname, roles::text[], qual, with_check FROM pg_policies
    WHERE schemaname = 'public' AND tablename = :table
    """
)
# Foreign keys to another tenant-owned table: the referencing columns.
_FOREIGN_KEYS = text(
    """
    SELECT con.conname, target.relname,
           array(SELECT a.attname FROM unnest(con.conkey) k JOIN pg_attribute a
                 ON a.attrelid = con.conrelid AND a.attnum = k) AS columns
    FROM pg_constraint con JOIN pg_class target ON target.oid = con.confrelid
    WHERE con.contype = 'f' AND con.conrelid = (:table)::regclass
    """
)


def tenant_models(models: Iterable[type] | None = None) -> list[type]:
    if models is not None:
        return list(models)
    from wafaa.extensions import db

    return sorted(
        (m.class_ for m in db.Model.registry.mappers if issubclass(m.class_, TenantScoped | Tenant)),
        key=lambda cls: cls.__tablename__,
    )


def tenant_column(model: type) -> str:
    return "id" if issubclass(model, Tenant) else "tenant_id"


def audit_problem(model: type) -> str | None:
    if getattr(model, "__audit_resource__", None):
        return None
    reason = getattr(model, "__audit_exempt__", None)
    if isinstance(reason, str) and reason.strip():
        return None
    return "no audit declaration (__audit_resource__, or __audit_exempt__ with a reason)"


def table_problems(connection: Connection, model: type, app_role: str, tenant_tables: set[str]) -> list[str]:
    table = model.__tablename__
    column = tenant_column(model)
    found = []
    problem = audit_problem(model)
    if problem:
        found.append(problem)
    row = connection.execute(_TABLE, {"table": table, "tenant_column": column, "role": app_role}).first()
    if row is None:
        return [*found, "table missing"]
    if not row.relrowsecurity:
        found.append("row-level security not enabled")
    if not row.relforcerowsecurity:
        found.append("row-level security not forced")
    if not row.tenant_index:
        found.append(f"no index leading with {column}")
    if not row.granted:
        found.append(f"no privileges for the request role {app_role}")
    policies = {p.policyname: p for p in connection.execute(_POLICIES, {"table": table})}
    isolation = policies.get("tenant_isolation")
    if isolation is None:
        found.append("policy tenant_isolation missing")
    else:
        for clause, name in ((isolation.qual, "USING"), (isolation.with_check, "WITH CHECK")):
            if not clause or "wafaa_current_tenant()" not in clause or column not in clause:
                found.append(f"policy tenant_isolation: {name} does not compare {column} with wafaa_current_tenant()")
        if app_role not in isolation.roles:
            found.append(f"policy tenant_isolation does not apply to {app_role}")
    system = policies.get("system_access")
    if system is None:
        found.append("policy system_access missing")
    elif not system.qual or "app.system" not in system.qual:
        found.append("policy system_access does not require app.system")
    for other in sorted(set(policies) - {"tenant_isolation", "system_access"}):
        found.append(f"unexpected policy {other} (permissive policies widen access)")
    for fk in connection.execute(_FOREIGN_KEYS, {"table": table}):
        if fk.relname in tenant_tables and fk.relname != "tenants" and "tenant_id" not in fk.columns:
            found.append(f"foreign key {fk.conname} to {fk.relname} does not include tenant_id")
    return found


def problems(connection: Connection, app_role: str, models: Iterable[type] | None = None) -> list[str]:
    """'<table>: <what is missing>' for every missing piece; empty when all hold."""
    selected = tenant_models(models)
    tenant_tables = {m.__tablename__ for m in tenant_models()} | {m.__tablename__ for m in selected}
    return [
        f"{model.__tablename__}: {problem}"
        for model in selected
        for problem in table_problems(connection, model, app_role, tenant_tables)
    ]
