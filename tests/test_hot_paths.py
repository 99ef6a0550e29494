"""The hot-path database functions (wafaa/sql), beneath the API.

They run outside any transaction of the app, as SECURITY DEFINER functions, so
these tests check that they answer only for what their arguments prove and leave
nothing behind on the connection.
"""

from __future__ import annotations

import uuid

import bcrypt
import psycopg
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


def test_request_identity_leaves_nothing_on_the_connection(raw_db, api, factory):
    world = factory.world()
    api.login(world.owner)
    session = _session_of(raw_db, world.owner.id)
    row = raw_db.execute(
        "SELECT email, tenant ->> 'id', tenant ->> 'slug' FROM wafaa_request_identity(%s, %s, %s)",
        (world.tenant.id, session, world.owner.id),
    ).fetchone()
    assert row == (world.owner.email, str(world.tenant.id), world.tenant.slug)
    # The owner's system flag it read with is off again, and nothing was bound.
    after = raw_db.execute(
        "SELECT current_user, current_setting('app.tenant_id', true), current_setting('app.system', true)"
    ).fetchone()
    assert after[0] == "postgres" and after[1] in ("", None) and after[2] in ("", None)


def test_the_login_salt_is_the_accounts_for_a_known_email_and_stable_for_an_unknown_one(app, factory, raw_db):
    world = factory.world()
    stored = raw_db.execute("SELECT password_hash FROM tenant_admins WHERE id = %s", (world.viewer.id,)).fetchone()[0]
    with app.app_context():
        assert call_hot_path("wafaa_login_salt", world.viewer.email, 4) == (stored[:29],)
        ghost = call_hot_path("wafaa_login_salt", "nobody@example.com", 12)[0]
        assert ghost == call_hot_path("wafaa_login_salt", "nobody@example.com", 12)[0]
        assert ghost != call_hot_path("wafaa_login_salt", "somebody-else@example.com", 12)[0]
        # A real bcrypt salt: bcrypt takes it.
        assert bcrypt.hashpw(b"anything", ghost.encode()).decode().startswith(ghost)


def _login(raw_db, admin, candidate: str | None, threshold: int = 10, source: str = "127.0.0.1") -> tuple[str, int]:
    """wafaa_login's outcome, and how many sessions the admin has after it."""
    outcome = raw_db.execute(
        "SELECT outcome FROM wafaa_login(%s, %s, NULL, %s, interval '15 minutes', interval '1 second',"
        " gen_random_uuid(), 'jti', interval '7 days', '127.0.0.1', %s, 'test', '{}'::jsonb)",
        (admin.email, candidate, threshold, source),
    ).fetchone()[0]
    sessions = raw_db.execute("SELECT count(*) FROM auth_sessions WHERE admin_id = %s", (admin.id,)).fetchone()[0]
    return outcome, sessions


def _last_failure(raw_db, admin) -> str:
    return raw_db.execute(
        "SELECT details ->> 'reason' FROM audit_logs WHERE resource_id = %s AND action = 'auth.login_failed'"
        " ORDER BY details ->> 'last_at' DESC LIMIT 1",
        (str(admin.id),),
    ).fetchone()[0]


def test_the_login_function_decides_every_outcome_as_the_account_is_now(factory, raw_db):
    """The comparison happens in the database, under the account's row lock: a
    password changed during the bcrypt check, a deactivation or throttling by
    concurrent failures all refuse, and each refusal is recorded."""
    admin = factory.world().owner
    stored = raw_db.execute("SELECT password_hash FROM tenant_admins WHERE id = %s", (admin.id,)).fetchone()[0]
    ghost = type(admin)(admin.id, admin.tenant_id, "nobody@example.com", "owner")
    assert _login(raw_db, ghost, stored) == ("refused", 0)
    assert _login(raw_db, admin, "$2b$04$" + "x" * 53) == ("refused", 0)
    assert _last_failure(raw_db, admin) == "bad_password"
    assert _login(raw_db, admin, None) == ("refused", 0)
    raw_db.execute("UPDATE tenant_admins SET is_active = false WHERE id = %s", (admin.id,))
    assert _login(raw_db, admin, stored) == ("refused", 0)
    assert _last_failure(raw_db, admin) == "inactive"
    raw_db.execute("UPDATE tenant_admins SET is_active = true WHERE id = %s", (admin.id,))
    raw_db.execute("UPDATE tenants SET is_active = false WHERE id = %s", (admin.tenant_id,))
    assert _login(raw_db, admin, stored) == ("refused", 0)
    raw_db.execute("UPDATE tenants SET is_active = true WHERE id = %s", (admin.tenant_id,))
    # Two wrong passwords from this source: at a threshold of two, even the right
    # hash is refused from it (throttled, not checked) ...
    assert _login(raw_db, admin, stored, threshold=2) == ("refused", 0)
    assert _last_failure(raw_db, admin) == "throttled"
    # ... but not from another source, nor from this one at a higher threshold.
    assert _login(raw_db, admin, stored, threshold=2, source="198.51.100.7") == ("started", 1)
    assert _login(raw_db, admin, stored, threshold=5) == ("started", 2)


def test_the_login_function_checks_its_arguments(raw_db, factory):
    admin = factory.world().owner
    call = (
        "SELECT * FROM wafaa_login(%s, NULL, {new_hash}, {threshold}, interval '15 minutes', interval '1 second',"
        " gen_random_uuid(), 'jti', interval '7 days', NULL, '127.0.0.1', NULL, '{{}}'::jsonb)"
    )
    for new_hash, threshold in (("'not a hash'", 10), ("NULL", 0)):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            raw_db.execute(call.format(new_hash=new_hash, threshold=threshold), (admin.email,))


def test_only_plain_bearer_headers_are_remembered():
    from wafaa.security import VerifiedTokens

    assert VerifiedTokens.key("Bearer aaa.bbb.ccc") is not None
    for header in ("Bearer aaa.bbb.ccc, Basic eHl6", "Bearer  aaa.bbb.ccc", "bearer aaa.bbb.ccc", "Bearer a.b"):
        assert VerifiedTokens.key(header) is None


def test_a_column_added_to_tenants_by_a_later_migration_does_not_break_the_running_service(api, factory, raw_db):
    """The identity returns the tenant row whole: while a migration adds a column
    (before the code that knows it is deployed), requests keep working."""
    world = factory.world()
    token = api.login(world.viewer)["access_token"]
    assert api.get("/api/v1/tenants/me", token=token).status_code == 200
    raw_db.execute("ALTER TABLE tenants ADD COLUMN phase_two_setting text DEFAULT 'new'")
    try:
        response = api.get("/api/v1/tenants/me", token=token)
        assert response.status_code == 200
        assert response.get_json()["slug"] == world.tenant.slug
    finally:
        raw_db.execute("ALTER TABLE tenants DROP COLUMN phase_two_setting")
