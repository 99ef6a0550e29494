"""The hot-path database functions of migration 0004, beneath the API.

They run outside any transaction of the app and set their own role and scope, so
these tests check that they isolate as strictly as the ORM path does and leave
nothing behind on the connection.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from wafaa.db_pool import call_hot_path

pytestmark = pytest.mark.usefixtures("migrated")


def _session_of(raw_db, admin_id: uuid.UUID) -> uuid.UUID:
    return raw_db.execute("SELECT id FROM auth_sessions WHERE admin_id = %s", (admin_id,)).fetchone()[0]


def test_only_the_hot_path_functions_can_be_called_that_way(app):
    with app.app_context(), pytest.raises(ValueError):
        call_hot_path("pg_sleep", 0)


def test_request_identity_answers_only_for_the_tenant_the_token_names(app, api, factory, raw_db):
    a, b = factory.world(), factory.world()
    api.login(a.owner)
    session = _session_of(raw_db, a.owner.id)
    with app.app_context():
        row = call_hot_path("wafaa_request_identity", a.tenant.id, session, a.owner.id)
        assert row is not None and row[2] == a.owner.email
        # The same session claimed for another tenant, or another admin: nothing.
        assert call_hot_path("wafaa_request_identity", b.tenant.id, session, a.owner.id) is None
        assert call_hot_path("wafaa_request_identity", a.tenant.id, session, a.admin.id) is None


def test_request_identity_reads_as_the_request_role_and_leaves_nothing_on_the_connection(raw_db, api, factory):
    world = factory.world()
    api.login(world.owner)
    session = _session_of(raw_db, world.owner.id)
    # Called as the app calls it, on a connection of the connecting role (a
    # superuser here), outside a transaction. current_user, evaluated after the
    # function ran, shows the role its query ran as.
    row = raw_db.execute(
        "SELECT email, current_user FROM wafaa_request_identity(%s, %s, %s)",
        (world.tenant.id, session, world.owner.id),
    ).fetchone()
    assert row == (world.owner.email, "wafaa_app")
    # The call was its own transaction: role and tenant are gone with it.
    after = raw_db.execute("SELECT current_user, current_setting('app.tenant_id', true)").fetchone()
    assert after[0] == "postgres" and after[1] in ("", None)


def test_login_candidate_finds_the_account_across_tenants(app, factory):
    world = factory.world()
    with app.app_context():
        row = call_hot_path("wafaa_login_candidate", world.viewer.email, timedelta(minutes=15))
        assert row[:2] == (world.viewer.id, world.tenant.id)
        assert row[2].startswith("$2b$") and row[3] is True and row[4] == 0
        assert call_hot_path("wafaa_login_candidate", "nobody@example.com", timedelta(minutes=15)) is None


def test_the_lockout_counts_recent_failures_but_not_refusals_of_a_locked_account(make_app, factory, raw_db):
    client = make_app(LOGIN_LOCKOUT_THRESHOLD="3").test_client()
    admin = factory.world().owner

    def failure(reason: str, minutes_ago: int) -> None:
        raw_db.execute(
            "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id, details, created_at)"
            " VALUES (%s, %s, 'auth.login_failed', 'admin', %s, jsonb_build_object('reason', %s::text),"
            " now() - make_interval(mins => %s))",
            (admin.tenant_id, admin.id, str(admin.id), reason, minutes_ago),
        )

    def log_in():
        return client.post("/api/v1/auth/login", json={"email": admin.email, "password": admin.password})

    for reason, minutes_ago in (("bad_password", 1), ("bad_password", 2), ("locked", 3), ("bad_password", 60)):
        failure(reason, minutes_ago)
    # Two failures count (the refusal of a locked account and the old one do not):
    # below the threshold of three.
    assert log_in().status_code == 200
    failure("inactive", 1)
    assert log_in().status_code == 401


def _start(raw_db, admin, checked_hash: str, threshold: int = 10) -> str:
    row = raw_db.execute(
        "SELECT outcome FROM wafaa_start_session(%s, %s, %s, NULL, %s, interval '15 minutes', gen_random_uuid(),"
        " 'jti', interval '7 days', '127.0.0.1', 'test', '{}'::jsonb)",
        (admin.tenant_id, admin.id, checked_hash, threshold),
    ).fetchone()
    return row[0]


def test_start_session_refuses_what_changed_during_the_password_check(factory, raw_db):
    """A login only starts a session for the account as it was checked: not after
    a password change, a deactivation, or a lock by concurrent failures."""
    world = factory.world()
    admin = world.owner

    def current_hash() -> str:
        return raw_db.execute("SELECT password_hash FROM tenant_admins WHERE id = %s", (admin.id,)).fetchone()[0]

    checked = current_hash()
    assert _start(raw_db, admin, "$2b$04$" + "x" * 53) == "password_changed"
    raw_db.execute("UPDATE tenant_admins SET is_active = false WHERE id = %s", (admin.id,))
    assert _start(raw_db, admin, checked) == "inactive"
    raw_db.execute("UPDATE tenant_admins SET is_active = true WHERE id = %s", (admin.id,))
    raw_db.execute("UPDATE tenants SET is_active = false WHERE id = %s", (admin.tenant_id,))
    assert _start(raw_db, admin, checked) == "inactive"
    raw_db.execute("UPDATE tenants SET is_active = true WHERE id = %s", (admin.tenant_id,))
    raw_db.execute(
        "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id, details)"
        " VALUES (%s, %s, 'auth.login_failed', 'admin', %s, '{\"reason\": \"bad_password\"}')",
        (admin.tenant_id, admin.id, str(admin.id)),
    )
    assert _start(raw_db, admin, checked, threshold=1) == "locked"
    assert raw_db.execute("SELECT count(*) FROM auth_sessions").fetchone() == (0,)
    assert _start(raw_db, admin, checked, threshold=2) == "started"
    assert raw_db.execute("SELECT count(*) FROM auth_sessions").fetchone() == (1,)


def test_only_plain_bearer_headers_are_remembered():
    from wafaa.security import VerifiedTokens

    assert VerifiedTokens.key("Bearer aaa.bbb.ccc") is not None
    for header in ("Bearer aaa.bbb.ccc, Basic eHl6", "Bearer  aaa.bbb.ccc", "bearer aaa.bbb.ccc", "Bearer a.b"):
        assert VerifiedTokens.key(header) is None
