"""Tenant isolation at the ORM layer (wafaa.tenancy), white-box, inside an app context.

Most tests here take row-level security out of the way first (`orm_layer_only`: the
transaction is switched back from the request role to the connecting superuser with
RESET ROLE, and a precondition proves the connection then sees every tenant's rows),
so whatever filtering remains is the ORM layer's own. Each layer must hold on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import delete, exists, func, select, text, update
from sqlalchemy.orm import aliased, joinedload, make_transient_to_detached, selectinload

from tests.support import TenantWorld
from wafaa.audit import AuditBypassError
from wafaa.extensions import db
from wafaa.models import AdminRole, AuditLog, AuthSession, Tenant, TenantAdmin
from wafaa.passwords import hash_password
from wafaa.services.admins import list_admins
from wafaa.tenancy import TenantScopeError, system_scope, tenant_scope


@dataclass
class Worlds:
    a: TenantWorld
    b: TenantWorld

    def ids(self, world: TenantWorld) -> set[uuid.UUID]:
        return {world.owner.id, world.admin.id, world.viewer.id}


@pytest.fixture
def worlds(factory, api) -> Worlds:
    """Two tenants with three admins each, and one login session per admin."""
    a, b = factory.world(), factory.world()
    for world in (a, b):
        for role in ("owner", "admin", "viewer"):
            api.login(world.by_role(role))
    return Worlds(a, b)


@contextmanager
def orm_layer_only(app, tenant_id: uuid.UUID) -> Iterator[None]:
    """tenant_scope(tenant_id) with row-level security out of the way for this
    transaction: back to the schema owner (the scope's connection outside a
    request), with its system policy on."""
    with app.app_context(), tenant_scope(tenant_id):
        db.session.execute(text("RESET ROLE; SELECT set_config('app.system', 'on', true)"))
        # Precondition: the connection sees both tenants, so only the ORM can filter.
        assert db.session.scalar(text("SELECT count(DISTINCT tenant_id) FROM tenant_admins")) >= 2
        yield


def _sessions(raw_db) -> dict[uuid.UUID, tuple]:
    rows = raw_db.execute(
        "SELECT id, tenant_id, user_agent, revoked_at, revoked_reason FROM auth_sessions ORDER BY id"
    ).fetchall()
    return {row[0]: row for row in rows}


# --- selects -------------------------------------------------------------------


def test_select_of_admins_returns_only_the_current_tenants(app, worlds):
    with orm_layer_only(app, worlds.a.tenant.id):
        found = db.session.scalars(select(TenantAdmin)).all()
        assert {admin.id for admin in found} == worlds.ids(worlds.a)


def test_column_selects_and_aggregates_over_entity_columns_are_filtered(app, worlds):
    with orm_layer_only(app, worlds.a.tenant.id):
        emails = set(db.session.scalars(select(TenantAdmin.email)))
        assert emails == {worlds.a.owner.email, worlds.a.admin.email, worlds.a.viewer.email}
        assert db.session.scalar(select(func.count(TenantAdmin.id))) == 3
        assert db.session.scalar(select(func.count(AuthSession.id))) == 3


def test_count_over_select_from_entity_is_filtered(app, worlds):
    # The entity appears only in FROM: the form SQLAlchemy recommends for counting.
    with orm_layer_only(app, worlds.a.tenant.id):
        assert db.session.scalar(select(func.count()).select_from(TenantAdmin)) == 3


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(lambda b_id: select(func.count()).select_from(select(TenantAdmin).subquery()), 3, id="subquery"),
        pytest.param(lambda b_id: select(func.count()).select_from(select(TenantAdmin.id).cte()), 3, id="cte"),
        pytest.param(lambda b_id: select(select(func.count(TenantAdmin.id)).scalar_subquery()), 3, id="scalar-sub"),
        pytest.param(lambda b_id: select(exists().where(TenantAdmin.id == b_id)), False, id="exists-b-admin"),
    ],
)
def test_nested_selects_of_a_scoped_entity_are_filtered(app, worlds, build, expected):
    # Counts must be A's 3 admins, not both tenants' 6; B's admin must not "exist".
    with orm_layer_only(app, worlds.a.tenant.id):
        assert db.session.scalar(build(worlds.b.owner.id)) == expected


@pytest.mark.parametrize("page", [1, 2, 5], ids=["first-page", "last-page", "past-the-end"])
def test_paginated_admin_list_totals_count_only_the_current_tenant(app, worlds, page):
    # The totals must agree with the items, on a page with rows and past the end
    # (where there is no row to carry a windowed count).
    with orm_layer_only(app, worlds.a.tenant.id):
        result = list_admins(page=page, page_size=2)
        assert {admin.id for admin in result["items"]} <= worlds.ids(worlds.a)
        assert (result["total"], result["pages"]) == (3, 2)


def test_select_of_tenants_returns_only_the_current_tenant(app, worlds):
    with orm_layer_only(app, worlds.a.tenant.id):
        assert [t.id for t in db.session.scalars(select(Tenant))] == [worlds.a.tenant.id]
        assert db.session.get(Tenant, worlds.b.tenant.id) is None


def test_session_get_of_another_tenants_rows_is_none(app, worlds):
    with orm_layer_only(app, worlds.a.tenant.id):
        assert db.session.get(TenantAdmin, worlds.b.owner.id) is None
        assert db.session.get(TenantAdmin, worlds.a.owner.id) is not None
        b_session = db.session.execute(
            text("SELECT id FROM auth_sessions WHERE tenant_id = :t LIMIT 1"), {"t": worlds.b.tenant.id}
        ).scalar_one()
        assert db.session.get(AuthSession, b_session) is None


def test_legacy_query_api_is_filtered(app, worlds):
    with orm_layer_only(app, worlds.a.tenant.id):
        assert {admin.id for admin in TenantAdmin.query.all()} == worlds.ids(worlds.a)
        assert TenantAdmin.query.filter_by(id=worlds.b.owner.id).first() is None


def test_legacy_query_count_is_filtered(app, worlds):
    # Query.count() counts over a subquery of the query.
    with orm_layer_only(app, worlds.a.tenant.id):
        assert TenantAdmin.query.count() == 3


# --- relationships, joins, aliases ---------------------------------------------


def test_relationship_loads_see_only_the_current_tenant(app, worlds):
    with orm_layer_only(app, worlds.a.tenant.id):
        tenant = db.session.get(Tenant, worlds.a.tenant.id)
        assert {admin.id for admin in tenant.admins} == worlds.ids(worlds.a)
        eager = db.session.scalars(select(Tenant).options(selectinload(Tenant.admins))).all()
        assert [t.id for t in eager] == [worlds.a.tenant.id]
        assert {admin.id for admin in eager[0].admins} == worlds.ids(worlds.a)
        joined = db.session.scalars(select(TenantAdmin).options(joinedload(TenantAdmin.tenant))).all()
        assert {admin.tenant.id for admin in joined} == {worlds.a.tenant.id}


def test_lazy_loads_started_from_another_tenants_identity_find_nothing(app, worlds):
    # Objects that claim B's identity without being loaded (so no query put them in
    # the session): their lazy loads must still be filtered to tenant A.
    with orm_layer_only(app, worlds.a.tenant.id):
        b_tenant = Tenant(id=worlds.b.tenant.id, name="x", slug="x")
        make_transient_to_detached(b_tenant)
        db.session.add(b_tenant)
        assert b_tenant.admins == []
    with orm_layer_only(app, worlds.a.tenant.id):
        b_admin = TenantAdmin(id=worlds.b.owner.id, tenant_id=worlds.b.tenant.id)
        make_transient_to_detached(b_admin)
        db.session.add(b_admin)
        assert b_admin.tenant is None


def test_joins_and_aliases_are_filtered(app, worlds):
    with orm_layer_only(app, worlds.a.tenant.id):
        other = aliased(TenantAdmin)
        pairs = db.session.execute(select(TenantAdmin.id, other.id).join(other, other.role == TenantAdmin.role)).all()
        assert {left for left, _ in pairs} | {right for _, right in pairs} == worlds.ids(worlds.a)
        assert len(pairs) == 3

        alias = aliased(TenantAdmin, name="someone")
        assert {a.id for a in db.session.scalars(select(alias))} == worlds.ids(worlds.a)

        rows = db.session.execute(
            select(AuthSession.tenant_id, TenantAdmin.tenant_id, Tenant.id)
            .join(TenantAdmin, TenantAdmin.id == AuthSession.admin_id)
            .join(Tenant, Tenant.id == TenantAdmin.tenant_id)
        ).all()
        assert len(rows) == 3
        assert {value for row in rows for value in row} == {worlds.a.tenant.id}

        # A join on a condition that ignores the tenant must not pull B's admins in.
        cross = db.session.execute(select(Tenant.id, TenantAdmin.id).join(TenantAdmin, TenantAdmin.role.isnot(None)))
        assert set(cross) == {(worlds.a.tenant.id, admin_id) for admin_id in worlds.ids(worlds.a)}


# --- bulk statements -----------------------------------------------------------


def test_bulk_update_of_sessions_touches_only_the_current_tenant(app, raw_db, worlds):
    before = _sessions(raw_db)
    with orm_layer_only(app, worlds.a.tenant.id):
        result = db.session.execute(
            update(AuthSession).values(user_agent="bulk-updated").execution_options(synchronize_session=False)
        )
        assert result.rowcount == 3
        db.session.commit()
    after = _sessions(raw_db)
    assert set(after) == set(before)
    for session_id, row in after.items():
        if row[1] == worlds.a.tenant.id:
            assert row[2] == "bulk-updated"
        else:
            assert row == before[session_id]


def test_bulk_delete_of_sessions_touches_only_the_current_tenant(app, raw_db, worlds):
    before = _sessions(raw_db)
    with orm_layer_only(app, worlds.a.tenant.id):
        result = db.session.execute(delete(AuthSession).execution_options(synchronize_session=False))
        assert result.rowcount == 3
        db.session.commit()
    after = _sessions(raw_db)
    assert after == {k: v for k, v in before.items() if v[1] == worlds.b.tenant.id}
    assert len(after) == 3


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(lambda: update(TenantAdmin).values(full_name="x"), id="update-admins"),
        pytest.param(lambda: delete(TenantAdmin), id="delete-admins"),
        pytest.param(lambda: update(Tenant).values(name="x"), id="update-tenants"),
        pytest.param(lambda: delete(Tenant), id="delete-tenants"),
    ],
)
def test_bulk_changes_of_audited_models_are_refused(app, raw_db, worlds, statement):
    # They would change rows without audit rows: refused before any SQL runs.
    before = raw_db.execute("SELECT row_to_json(t)::text FROM tenant_admins t ORDER BY id").fetchall()
    with app.app_context(), tenant_scope(worlds.a.tenant.id):
        with pytest.raises(AuditBypassError):
            db.session.execute(statement().execution_options(synchronize_session=False))
        db.session.rollback()
    assert raw_db.execute("SELECT row_to_json(t)::text FROM tenant_admins t ORDER BY id").fetchall() == before


# --- flushes -------------------------------------------------------------------


def _new_admin(**kwargs) -> TenantAdmin:
    n = uuid.uuid4().hex[:8]
    return TenantAdmin(
        email=f"new-{n}@example.test",
        full_name="New Admin",
        role=AdminRole.VIEWER,
        password_hash=hash_password("a long enough password"),
        **kwargs,
    )


def test_new_admin_without_tenant_id_is_stamped_with_the_current_tenant(app, raw_db, worlds):
    with app.app_context(), tenant_scope(worlds.a.tenant.id):
        admin = _new_admin()
        db.session.add(admin)
        db.session.commit()
        admin_id = admin.id
    assert raw_db.execute("SELECT tenant_id FROM tenant_admins WHERE id = %s", (admin_id,)).fetchone() == (
        worlds.a.tenant.id,
    )


def test_new_admin_of_another_tenant_is_refused_on_flush(app, raw_db, worlds):
    with app.app_context(), tenant_scope(worlds.a.tenant.id):
        admin = _new_admin(tenant_id=worlds.b.tenant.id)
        db.session.add(admin)
        with pytest.raises(TenantScopeError):
            db.session.flush()
        db.session.rollback()
    assert raw_db.execute("SELECT count(*) FROM tenant_admins WHERE id = %s", (admin.id,)).fetchone() == (0,)


def test_an_admin_cannot_be_moved_to_another_tenant(app, raw_db, worlds):
    with app.app_context(), tenant_scope(worlds.a.tenant.id):
        admin = db.session.get(TenantAdmin, worlds.a.viewer.id)
        admin.tenant_id = worlds.b.tenant.id
        with pytest.raises(TenantScopeError):
            db.session.flush()
        db.session.rollback()
    row = raw_db.execute("SELECT tenant_id FROM tenant_admins WHERE id = %s", (worlds.a.viewer.id,)).fetchone()
    assert row == (worlds.a.tenant.id,)


def test_tenants_cannot_be_created_inside_a_tenant_scope(app, raw_db, worlds):
    with app.app_context(), tenant_scope(worlds.a.tenant.id):
        db.session.add(Tenant(id=uuid.uuid4(), name="Sneaky", slug=f"sneaky-{uuid.uuid4().hex[:8]}"))
        with pytest.raises(TenantScopeError):
            db.session.flush()
        db.session.rollback()
    assert raw_db.execute("SELECT count(*) FROM tenants").fetchone() == (2,)


# --- no scope: fail closed -----------------------------------------------------


NO_SCOPE_STATEMENTS = {
    "select-admins": lambda w: db.session.execute(select(TenantAdmin)).all(),
    "select-admin-emails": lambda w: db.session.execute(select(TenantAdmin.email)).all(),
    "select-tenants": lambda w: db.session.execute(select(Tenant)).all(),
    "select-sessions": lambda w: db.session.execute(select(AuthSession)).all(),
    "select-audit-logs": lambda w: db.session.execute(select(AuditLog)).all(),
    "session-get": lambda w: db.session.get(TenantAdmin, w.a.owner.id),
    "legacy-query": lambda w: TenantAdmin.query.all(),
    "update-sessions": lambda w: db.session.execute(
        update(AuthSession).values(user_agent="x").execution_options(synchronize_session=False)
    ),
    "delete-sessions": lambda w: db.session.execute(delete(AuthSession).execution_options(synchronize_session=False)),
    "count-select-from": lambda w: db.session.scalar(select(func.count()).select_from(TenantAdmin)),
    "count-subquery": lambda w: db.session.scalar(select(func.count()).select_from(select(TenantAdmin).subquery())),
    "exists": lambda w: db.session.scalar(select(exists().where(TenantAdmin.id == w.b.owner.id))),
}


@pytest.mark.parametrize("name", list(NO_SCOPE_STATEMENTS))
def test_without_a_scope_statements_on_scoped_models_raise(app, worlds, name):
    with app.app_context():
        with pytest.raises(TenantScopeError):
            NO_SCOPE_STATEMENTS[name](worlds)
        db.session.rollback()


def test_without_a_scope_new_scoped_rows_cannot_be_flushed(app, raw_db, worlds):
    with app.app_context():
        db.session.add(_new_admin(tenant_id=worlds.a.tenant.id))
        with pytest.raises(TenantScopeError):
            db.session.flush()
        db.session.rollback()
    assert raw_db.execute("SELECT count(*) FROM tenant_admins").fetchone() == (6,)


def test_system_scope_sees_every_tenant(app, worlds):
    with app.app_context(), system_scope("isolation test"):
        assert {t.id for t in db.session.scalars(select(Tenant))} == {worlds.a.tenant.id, worlds.b.tenant.id}
        assert {a.id for a in db.session.scalars(select(TenantAdmin))} == worlds.ids(worlds.a) | worlds.ids(worlds.b)
        assert db.session.scalar(select(func.count()).select_from(AuthSession)) == 6


# --- scope discipline ----------------------------------------------------------


@pytest.mark.parametrize("second", ["tenant-b", "same-tenant", "system"])
def test_changing_scope_inside_an_open_transaction_raises(app, worlds, second):
    scopes = {
        "tenant-b": lambda: tenant_scope(worlds.b.tenant.id),
        "same-tenant": lambda: tenant_scope(worlds.a.tenant.id),
        "system": lambda: system_scope("nested"),
    }
    with app.app_context(), tenant_scope(worlds.a.tenant.id):
        db.session.scalars(select(TenantAdmin)).all()  # opens the transaction
        assert db.session().in_transaction()
        with pytest.raises(TenantScopeError):
            with scopes[second]():
                pytest.fail("the nested scope must not be entered")
        # The outer scope is intact: still tenant A only.
        assert {a.id for a in db.session.scalars(select(TenantAdmin))} == worlds.ids(worlds.a)


def test_entering_a_tenant_scope_from_an_open_system_transaction_raises(app, worlds):
    with app.app_context(), system_scope("isolation test"):
        db.session.scalars(select(Tenant)).all()
        with pytest.raises(TenantScopeError):
            with tenant_scope(worlds.a.tenant.id):
                pytest.fail("the nested scope must not be entered")


def test_a_scope_is_a_unit_of_work_that_commits_when_its_block_succeeds(app, raw_db, worlds):
    with app.app_context(), tenant_scope(worlds.a.tenant.id):
        db.session.get(TenantAdmin, worlds.a.viewer.id).full_name = "Saved By The Scope"
    row = raw_db.execute("SELECT full_name FROM tenant_admins WHERE id = %s", (worlds.a.viewer.id,)).fetchone()
    assert row[0] == "Saved By The Scope"
    audited = raw_db.execute(
        "SELECT count(*) FROM audit_logs WHERE action = 'admin.updated' AND resource_id = %s",
        (str(worlds.a.viewer.id),),
    ).fetchone()
    assert audited == (1,)


def test_a_scope_whose_block_raises_commits_nothing(app, raw_db, worlds):
    with pytest.raises(RuntimeError, match="boom"):
        with app.app_context(), tenant_scope(worlds.a.tenant.id):
            db.session.add(_new_admin())
            db.session.flush()
            raise RuntimeError("boom")
    assert raw_db.execute("SELECT count(*) FROM tenant_admins").fetchone() == (6,)
