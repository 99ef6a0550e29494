"""The registry check: every tenant-scoped table has every piece of its isolation
and audit, and a table missing any one of them is named with what it misses.

The throwaway table is built with the migration kit (wafaa.schema_kit) exactly as
a migration would, inside a transaction that is rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from wafaa.audit import AuditBypassError
from wafaa.extensions import db
from wafaa.models import AdminRole, AuditLog, TenantAdmin, TenantScoped
from wafaa.schema_check import problems, tenant_models
from wafaa.schema_kit import ALL, make_tenant_owned
from wafaa.tenancy import system_scope, tenant_scope


class ProbeBase(DeclarativeBase):
    """A registry of its own: the throwaway model never joins the app's."""


class Probe(TenantScoped, ProbeBase):
    __tablename__ = "kit_probe"
    __audit_exempt__ = "a throwaway table of this test"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)


class UndeclaredProbe(TenantScoped, ProbeBase):
    __tablename__ = "kit_probe_undeclared"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)


def test_every_tenant_table_of_the_registry_has_every_piece(app):
    names = {model.__tablename__ for model in tenant_models()}
    assert names == {"tenants", "tenant_admins", "auth_sessions", "audit_logs", "login_throttles"}
    with app.app_context(), system_scope("schema check"):
        assert problems(db.session.connection(), app.config["DB_APP_ROLE"]) == []


@contextmanager
def probe_table(app) -> Iterator:
    """kit_probe, made tenant-owned by the kit, in a transaction rolled back at the end."""
    with app.app_context(), system_scope("schema check probe"):
        connection = db.session.connection()
        connection.execute(
            text(
                "CREATE TABLE kit_probe (id uuid PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants (id),"
                " admin_id uuid, title text)"
            )
        )
        with Operations.context(MigrationContext.configure(connection)):
            make_tenant_owned(
                "kit_probe", select=ALL, insert=ALL, update=("title",), references={"admin_id": "tenant_admins"}
            )
        try:
            yield connection
        finally:
            db.session.rollback()


def check(connection, app, model=Probe) -> list[str]:
    return problems(connection, app.config["DB_APP_ROLE"], models=[model])


def test_a_table_made_by_the_kit_passes(app):
    with probe_table(app) as connection:
        assert check(connection, app) == []


OMISSIONS = {
    "ALTER TABLE kit_probe NO FORCE ROW LEVEL SECURITY": "kit_probe: row-level security not forced",
    "ALTER TABLE kit_probe DISABLE ROW LEVEL SECURITY": "kit_probe: row-level security not enabled",
    "DROP POLICY tenant_isolation ON kit_probe": "kit_probe: policy tenant_isolation missing",
    "DROP POLICY system_access ON kit_probe": "kit_probe: policy system_access missing",
    "REVOKE ALL ON kit_probe FROM wafaa_app": "kit_probe: no privileges for the request role wafaa_app",
    "DROP INDEX ix_kit_probe_tenant_id": "kit_probe: no index leading with tenant_id",
    "CREATE POLICY everyone ON kit_probe USING (true)": "kit_probe: unexpected policy everyone",
    # Every key of a tenant table includes tenant_id (on Citus it must), so only a
    # key that pairs the target's tenant_id with another column can leave it out.
    "ALTER TABLE kit_probe ADD FOREIGN KEY (admin_id, id) REFERENCES tenant_admins (id, tenant_id)": (
        "kit_probe: foreign key kit_probe_admin_id_id_fkey to tenant_admins does not include tenant_id"
    ),
    "DROP POLICY tenant_isolation ON kit_probe; CREATE POLICY tenant_isolation ON kit_probe TO wafaa_app "
    "USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)": (
        "kit_probe: policy tenant_isolation: USING does not compare tenant_id with wafaa_current_tenant()"
    ),
}


@pytest.mark.parametrize("omission", list(OMISSIONS))
def test_the_check_names_each_missing_piece(app, omission):
    with probe_table(app) as connection:
        connection.execute(text(omission))
        found = check(connection, app)
        assert any(problem.startswith(OMISSIONS[omission]) for problem in found), found


def test_the_check_requires_an_audit_declaration(app):
    with app.app_context(), system_scope("schema check probe"):
        connection = db.session.connection()
        connection.execute(text("CREATE TABLE kit_probe_undeclared (id uuid PRIMARY KEY, tenant_id uuid NOT NULL)"))
        with Operations.context(MigrationContext.configure(connection)):
            make_tenant_owned("kit_probe_undeclared", select=ALL)
        assert check(connection, app, UndeclaredProbe) == [
            "kit_probe_undeclared: no audit declaration (__audit_resource__, or __audit_exempt__ with a reason)"
        ]
        db.session.rollback()


def test_a_table_with_nothing_done_lists_every_missing_piece(app):
    with app.app_context(), system_scope("schema check probe"):
        connection = db.session.connection()
        connection.execute(text("CREATE TABLE kit_probe (id uuid PRIMARY KEY, tenant_id uuid NOT NULL)"))
        assert check(connection, app) == [
            "kit_probe: row-level security not enabled",
            "kit_probe: row-level security not forced",
            "kit_probe: no index leading with tenant_id",
            "kit_probe: no privileges for the request role wafaa_app",
            "kit_probe: policy tenant_isolation missing",
            "kit_probe: policy system_access missing",
        ]
        db.session.rollback()


# --- bulk statements that would skip the audit ----------------------------------------


def test_a_bulk_orm_insert_of_an_audited_model_is_refused(app, factory, raw_db):
    tenant = factory.tenant()
    with pytest.raises(AuditBypassError, match="TenantAdmin"):
        with app.app_context(), tenant_scope(tenant.id):
            db.session.execute(
                insert(TenantAdmin),
                [
                    {
                        "id": uuid.uuid4(),
                        "tenant_id": tenant.id,
                        "email": "bulk@example.test",
                        "full_name": "Bulk",
                        "role": AdminRole.VIEWER,
                        "password_hash": "x",
                    }
                ],
            )
    assert raw_db.execute("SELECT count(*) FROM tenant_admins").fetchone() == (0,)


def test_a_bulk_insert_of_an_exempt_model_is_allowed(app, factory, raw_db):
    tenant = factory.tenant()
    with app.app_context(), tenant_scope(tenant.id):
        db.session.execute(insert(AuditLog), [{"tenant_id": tenant.id, "action": "test.bulk", "resource_type": "test"}])
    assert raw_db.execute("SELECT count(*) FROM audit_logs WHERE action = 'test.bulk'").fetchone() == (1,)
