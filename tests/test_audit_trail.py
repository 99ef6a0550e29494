"""The audit trail: written automatically from ORM changes, in the same transaction.

Every change of tenant data writes exactly one audit row, committed with the
change; if either cannot be written, neither exists (proved with real database
failures raised by triggers). The rows carry the changes, the request id and the
client IP, never a password or its hash, and the serving role can only append.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest

from tests.support import ApiClient, Factory, TenantWorld, error_of

ME = "/api/v1/tenants/me"
ADMINS = f"{ME}/admins"
SECRET_PASSWORD = "Zq7-unique-audit-secret-pw"


def change_rows(raw_db, tenant_id) -> list[dict]:
    """The tenant's audit rows other than auth events, oldest first."""
    return [
        row[0]
        for row in raw_db.execute(
            "SELECT row_to_json(t) FROM audit_logs t WHERE tenant_id = %s AND action NOT LIKE 'auth.%%' "
            "ORDER BY created_at, id",
            (tenant_id,),
        )
    ]


def rows_since(raw_db, tenant_id, before: list[dict]) -> list[dict]:
    seen = {row["id"] for row in before}
    return [row for row in change_rows(raw_db, tenant_id) if row["id"] not in seen]


def xmin(raw_db, table: str, row_id) -> str:
    return raw_db.execute(f"SELECT xmin::text FROM {table} WHERE id = %s", (row_id,)).fetchone()[0]


def tenant_row(raw_db, tenant_id) -> dict:
    return raw_db.execute("SELECT row_to_json(t) FROM tenants t WHERE id = %s", (tenant_id,)).fetchone()[0]


# --- exactly one row per change -------------------------------------------------------

OPERATIONS: dict[str, Callable] = {
    "tenant.updated": lambda api, w, t: api.patch(ME, token=t, json={"name": "Renamed", "settings": {"a": 1}}),
    "admin.created": lambda api, w, t: api.post(
        ADMINS,
        token=t,
        json={"email": "fresh@example.test", "full_name": "Fresh", "role": "viewer", "password": SECRET_PASSWORD},
    ),
    "admin.updated": lambda api, w, t: api.patch(
        f"{ADMINS}/{w.viewer.id}", token=t, json={"full_name": "New Name", "role": "admin"}
    ),
    "admin.deactivated": lambda api, w, t: api.post(f"{ADMINS}/{w.viewer.id}/deactivate", token=t),
    "admin.deactivated-by-patch": lambda api, w, t: api.patch(
        f"{ADMINS}/{w.viewer.id}", token=t, json={"is_active": False}
    ),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_each_change_writes_exactly_one_audit_row(api, factory, raw_db, operation):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    before = change_rows(raw_db, world.tenant.id)
    response = OPERATIONS[operation](api, world, token)
    assert response.status_code in (200, 201), response.get_json()
    new = rows_since(raw_db, world.tenant.id, before)
    assert [row["action"] for row in new] == [operation.split("-")[0]]


def test_reactivation_writes_exactly_one_admin_reactivated_row(api, factory, raw_db):
    world = factory.world()
    gone = factory.admin(world.tenant, "viewer", is_active=False)
    token = api.login(world.owner)["access_token"]
    before = change_rows(raw_db, world.tenant.id)
    assert api.patch(f"{ADMINS}/{gone.id}", token=token, json={"is_active": True}).status_code == 200
    new = rows_since(raw_db, world.tenant.id, before)
    assert [row["action"] for row in new] == ["admin.reactivated"]
    assert new[0]["details"]["changes"] == {"is_active": {"before": False, "after": True}}


def test_a_patch_that_changes_nothing_writes_no_audit_row(api, factory, raw_db):
    world = factory.world(settings={"a": 1})
    token = api.login(world.owner)["access_token"]
    before = change_rows(raw_db, world.tenant.id)
    response = api.patch(ME, token=token, json={"settings": {"a": 1}})
    assert response.status_code == 200
    assert rows_since(raw_db, world.tenant.id, before) == []


# --- what the rows say ----------------------------------------------------------------


def test_tenant_updated_records_before_and_after_actor_request_id_and_ip(api, factory, raw_db):
    world = factory.world(name="Old Name", settings={"keep": True, "drop": 1})
    token = api.login(world.admin)["access_token"]
    before = change_rows(raw_db, world.tenant.id)
    response = api.patch(
        ME,
        token=token,
        json={"name": "New Name", "settings": {"drop": None, "add": [1, 2]}},
        headers={"X-Request-ID": "req-audit-0001"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-audit-0001"
    new = rows_since(raw_db, world.tenant.id, before)
    assert new, "an audit row was written"
    for row in new:
        assert row["action"] == "tenant.updated"
        assert (row["resource_type"], row["resource_id"]) == ("tenant", str(world.tenant.id))
        assert row["user_id"] == str(world.admin.id)
        assert row["ip_address"] == "127.0.0.1"
        assert row["details"]["request_id"] == "req-audit-0001"
        assert row["details"]["changes"] == {
            "name": {"before": "Old Name", "after": "New Name"},
            # What changed, not the whole settings twice: "keep" is not there.
            "settings": {"changed_keys": ["add", "drop"], "before": {"drop": 1}, "after": {"add": [1, 2]}},
        }
        # Same transaction as the change itself.
        assert xmin(raw_db, "audit_logs", row["id"]) == xmin(raw_db, "tenants", world.tenant.id)


def test_a_generated_request_id_is_recorded_when_the_client_sends_none(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    response = api.patch(ME, token=token, json={"name": "Another"})
    new = change_rows(raw_db, world.tenant.id)[-1]
    assert new["details"]["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["X-Request-ID"]


def test_x_forwarded_for_is_ignored_without_trusted_proxies(app, api, factory, raw_db):
    assert app.config["TRUSTED_PROXY_COUNT"] == 0
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    response = api.patch(ME, token=token, json={"name": "Spoofed"}, headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200
    assert change_rows(raw_db, world.tenant.id)[-1]["ip_address"] == "127.0.0.1"


@pytest.fixture
def proxied_api(make_app):
    """The app as deployed behind one trusted proxy (TRUSTED_PROXY_COUNT=1)."""
    proxied = make_app(TRUSTED_PROXY_COUNT="1")
    assert proxied.config["TRUSTED_PROXY_COUNT"] == 1
    return ApiClient(proxied.test_client(), Factory(proxied))


def test_x_forwarded_for_from_one_trusted_proxy_is_honoured(proxied_api, factory, raw_db):
    world = factory.world()
    token = proxied_api.login(world.owner)["access_token"]
    # The client claims an address; our proxy appends the one it saw, which wins.
    headers = {"X-Forwarded-For": "198.51.100.66, 203.0.113.7"}
    assert proxied_api.patch(ME, token=token, json={"name": "Behind Proxy"}, headers=headers).status_code == 200
    assert change_rows(raw_db, world.tenant.id)[-1]["ip_address"] == "203.0.113.7"


def test_admin_created_records_the_new_admin_but_never_the_password_or_hash(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    before = change_rows(raw_db, world.tenant.id)
    body = {"email": "Hana@Example.test", "full_name": "Hana", "role": "admin", "password": SECRET_PASSWORD}
    response = api.post(ADMINS, token=token, json=body)
    assert response.status_code == 201
    admin_id = response.get_json()["id"]
    new = rows_since(raw_db, world.tenant.id, before)
    assert new, "an audit row was written"
    for row in new:
        assert (row["action"], row["resource_type"], row["resource_id"]) == ("admin.created", "admin", admin_id)
        assert row["user_id"] == str(world.owner.id)
        after = row["details"]["after"]
        assert after["email"] == "hana@example.test"
        assert (after["role"], after["full_name"], after["is_active"]) == ("admin", "Hana", True)
        assert after["tenant_id"] == str(world.tenant.id)
        assert "password_hash" not in after and "password" not in after
        assert xmin(raw_db, "audit_logs", row["id"]) == xmin(raw_db, "tenant_admins", admin_id)
    # Nowhere in the whole audit log: not the password, not any bcrypt hash.
    everything = raw_db.execute("SELECT coalesce(string_agg(row_to_json(t)::text, ' '), '') FROM audit_logs t")
    text = everything.fetchone()[0]
    assert SECRET_PASSWORD not in text
    assert "$2b$" not in text and "$2a$" not in text and "$2y$" not in text


def test_admin_updated_and_deactivated_record_the_changes(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    path = f"{ADMINS}/{world.viewer.id}"
    old_name = raw_db.execute("SELECT full_name FROM tenant_admins WHERE id = %s", (world.viewer.id,)).fetchone()[0]
    before = change_rows(raw_db, world.tenant.id)
    assert api.patch(path, token=token, json={"full_name": "Nadia K", "role": "admin"}).status_code == 200
    updated = rows_since(raw_db, world.tenant.id, before)
    assert updated and all(row["action"] == "admin.updated" for row in updated)
    assert updated[0]["details"]["changes"] == {
        "full_name": {"before": old_name, "after": "Nadia K"},
        "role": {"before": "viewer", "after": "admin"},
    }
    before = change_rows(raw_db, world.tenant.id)
    assert api.post(f"{path}/deactivate", token=token).status_code == 200
    deactivated = rows_since(raw_db, world.tenant.id, before)
    assert deactivated and all(row["action"] == "admin.deactivated" for row in deactivated)
    assert deactivated[0]["details"]["changes"] == {"is_active": {"before": True, "after": False}}
    assert deactivated[0]["resource_id"] == str(world.viewer.id)
    assert deactivated[0]["user_id"] == str(world.owner.id)


# --- the change and its audit row commit or fail together -----------------------------


@pytest.fixture
def failing_trigger(raw_db):
    """Install a trigger (as the superuser) for the duration of one test; always dropped."""
    installed: list[tuple[str, str]] = []

    def install(table: str, timing: str, action_condition: str) -> None:
        name = f"h4_fail_{uuid.uuid4().hex[:8]}"
        raw_db.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$BEGIN RAISE EXCEPTION 'injected failure from %', TG_NAME; END$$"
        )
        installed.append((name, table))
        raw_db.execute(f"CREATE {timing} {name} {action_condition.format(table=table)} EXECUTE FUNCTION {name}()")

    try:
        yield install
    finally:
        for name, table in installed:
            raw_db.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            raw_db.execute(f"DROP FUNCTION IF EXISTS {name}()")


def test_when_the_audit_row_cannot_be_written_the_change_is_rolled_back(api, factory, raw_db, failing_trigger):
    world = factory.world(settings={"a": 1})
    token = api.login(world.owner)["access_token"]
    before = tenant_row(raw_db, world.tenant.id)
    failing_trigger(
        "audit_logs", "TRIGGER", "BEFORE INSERT ON {table} FOR EACH ROW WHEN (NEW.action = 'tenant.updated')"
    )
    response = api.patch(ME, token=token, json={"name": "Must Not Stick", "settings": {"a": 2}})
    assert response.status_code >= 500
    error = error_of(response)
    assert "injected" not in error["message"] and "audit" not in response.get_data(as_text=True)
    assert tenant_row(raw_db, world.tenant.id) == before
    assert [r for r in change_rows(raw_db, world.tenant.id) if r["action"] == "tenant.updated"] == []


def test_when_the_audit_row_of_a_new_admin_fails_no_admin_is_created(api, factory, raw_db, failing_trigger):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    failing_trigger(
        "audit_logs", "TRIGGER", "BEFORE INSERT ON {table} FOR EACH ROW WHEN (NEW.action = 'admin.created')"
    )
    body = {"email": "ghost@example.test", "full_name": "Ghost", "role": "viewer", "password": SECRET_PASSWORD}
    assert api.post(ADMINS, token=token, json=body).status_code >= 500
    assert raw_db.execute("SELECT count(*) FROM tenant_admins WHERE email = 'ghost@example.test'").fetchone() == (0,)


def test_when_the_change_fails_at_commit_neither_it_nor_its_audit_row_exists(api, factory, raw_db, failing_trigger):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    before = tenant_row(raw_db, world.tenant.id)
    audit_before = change_rows(raw_db, world.tenant.id)
    # A deferred constraint trigger: the UPDATE and the audit INSERT both succeed,
    # then COMMIT fails.
    failing_trigger(
        "tenants",
        "CONSTRAINT TRIGGER",
        "AFTER UPDATE ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.name = 'Fails At Commit')",
    )
    response = api.patch(ME, token=token, json={"name": "Fails At Commit", "settings": {"x": 1}})
    assert response.status_code >= 500
    error_of(response)
    assert tenant_row(raw_db, world.tenant.id) == before
    assert change_rows(raw_db, world.tenant.id) == audit_before
    # The app recovers: the next change (which the trigger lets through) commits with its row.
    assert api.patch(ME, token=token, json={"name": "Commits Fine"}).status_code == 200
    assert tenant_row(raw_db, world.tenant.id)["name"] == "Commits Fine"
    assert change_rows(raw_db, world.tenant.id)[-1]["details"]["changes"]["name"]["after"] == "Commits Fine"


# --- append-only ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_logs SET action = 'tampered' WHERE tenant_id = %(t)s",
        "UPDATE audit_logs SET details = '{}'::jsonb",
        "DELETE FROM audit_logs WHERE tenant_id = %(t)s",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
    ],
)
def test_the_serving_role_cannot_update_or_delete_audit_rows(app, api, factory, raw_db, statement):
    world: TenantWorld = factory.world()
    api.patch(ME, world.owner, json={"name": "Something To Audit"})
    before = raw_db.execute("SELECT row_to_json(t)::text FROM audit_logs t ORDER BY id").fetchall()
    assert before
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with raw_db.transaction():
            # Bound the way operators' tenant scopes are (a plain set_config would
            # bind nothing), then the request role.
            raw_db.execute("SELECT wafaa_private.bind_tenant(%s)", (world.tenant.id,))
            raw_db.execute(f"SET LOCAL ROLE {app.config['DB_APP_ROLE']}")  # wafaa_app
            # Control: the role does see the tenant's rows, so a refusal is not an empty match.
            assert raw_db.execute("SELECT count(*) FROM audit_logs").fetchone()[0] > 0
            raw_db.execute(statement, {"t": world.tenant.id})
    assert raw_db.execute("SELECT row_to_json(t)::text FROM audit_logs t ORDER BY id").fetchall() == before
