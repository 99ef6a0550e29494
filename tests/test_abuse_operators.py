"""Operators' answers to abuse (issue 9): unlocking an account, releasing an
email address, purging the audit log, and `flask seed` refusing production.

Effects are checked through the API (logins) and beneath it (raw_db).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import assert_refused

LOGIN = "/api/v1/auth/login"
NEW_PASSWORD = "a-brand-new-password-42"
ATTACKER = {"X-Forwarded-For": "203.0.113.66"}


@pytest.fixture
def throttling_app(make_app):
    return make_app(LOGIN_LOCKOUT_THRESHOLD="2", LOGIN_THROTTLE_BASE_SECONDS="60", TRUSTED_PROXY_COUNT="1")


def _login(client, admin, password=None, headers=ATTACKER):
    return client.post(LOGIN, json={"email": admin.email, "password": password or admin.password}, headers=headers)


def _throttle(client, admin) -> None:
    for _ in range(2):
        assert _login(client, admin, "not the password!").status_code == 401
    assert _login(client, admin).status_code == 401  # throttled, right password and all


def _actions(raw_db, admin) -> list[str]:
    rows = raw_db.execute(
        "SELECT action FROM audit_logs WHERE resource_id = %s ORDER BY created_at", (str(admin.id),)
    ).fetchall()
    return [row[0] for row in rows]


def test_flask_admins_unlock_lets_a_throttled_source_log_in_and_is_audited(cli, throttling_app, factory, raw_db):
    client = throttling_app.test_client()
    owner = factory.world().owner
    _throttle(client, owner)

    result = cli("admins", "unlock", owner.email.upper())
    assert result.exit_code == 0, result.output
    assert "1 throttled source cleared" in result.output
    assert _login(client, owner).status_code == 200
    unlock = raw_db.execute(
        "SELECT details FROM audit_logs WHERE action = 'auth.login_unlocked' AND resource_id = %s", (str(owner.id),)
    ).fetchone()[0]
    assert unlock["reason"] == "unlocked" and unlock["sources_cleared"] == 1 and unlock["via"] == "cli"


def test_unlocking_an_account_with_nothing_to_clear_is_still_recorded(cli, factory, raw_db):
    owner = factory.world().owner
    assert cli("admins", "unlock", owner.email).exit_code == 0
    assert "auth.login_unlocked" in _actions(raw_db, owner)
    assert_refused(cli("admins", "unlock", "nobody@nowhere.example.com"), "nobody@nowhere.example.com")


def test_a_password_reset_clears_the_failure_count(cli, throttling_app, factory, raw_db):
    client = throttling_app.test_client()
    owner = factory.world().owner
    _throttle(client, owner)

    result = cli("admins", "set-password", owner.email, "--password-stdin", input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert _login(client, owner, NEW_PASSWORD).status_code == 200
    assert raw_db.execute("SELECT count(*) FROM login_throttles").fetchone() == (0,)
    actions = _actions(raw_db, owner)
    assert actions.index("admin.password_changed") < actions.index("auth.login_unlocked")


def test_flask_admins_release_email_frees_a_deactivated_admins_address(cli, api, factory, raw_db):
    holder, other = factory.world(), factory.world()
    # Another tenant cannot use the address while anyone holds it.
    body = {"email": holder.viewer.email, "full_name": "Wanted", "role": "viewer", "password": NEW_PASSWORD}
    assert api.post("/api/v1/tenants/me/admins", other.owner, json=body).status_code == 409

    assert_refused(cli("admins", "release-email", holder.viewer.email), "deactivate")  # still active
    assert api.post(f"/api/v1/tenants/me/admins/{holder.viewer.id}/deactivate", holder.owner).status_code == 200
    result = cli("admins", "release-email", holder.viewer.email)
    assert result.exit_code == 0, result.output

    created = api.post("/api/v1/tenants/me/admins", other.owner, json=body)
    assert created.status_code == 201, created.get_json()
    # The released admin keeps its history, under a placeholder nobody logs in with.
    row = raw_db.execute("SELECT email, is_active FROM tenant_admins WHERE id = %s", (holder.viewer.id,)).fetchone()
    assert row == (f"released-{holder.viewer.id.hex}@released.invalid", False)
    released = raw_db.execute(
        "SELECT tenant_id, details FROM audit_logs WHERE action = 'admin.email_released'"
    ).fetchall()
    assert [tenant for tenant, _ in released] == [holder.tenant.id]
    assert released[0][1]["changes"]["email"]["before"] == holder.viewer.email


def test_flask_audit_purge_removes_old_entries_and_records_the_purge(cli, api, factory, raw_db):
    first, second = factory.world(), factory.world()
    for world in (first, second):
        api.login(world.owner)
    raw_db.execute(
        "UPDATE audit_logs SET created_at = now() - interval '400 days' WHERE tenant_id = %s", (first.tenant.id,)
    )
    before = raw_db.execute("SELECT tenant_id, count(*) FROM audit_logs GROUP BY 1").fetchall()
    old = dict(before)[first.tenant.id]

    result = cli("audit", "purge")  # AUDIT_RETENTION_DAYS: 365
    assert result.exit_code == 0, result.output
    assert f"Purged {old} audit entries" in result.output and "from 1 tenant." in result.output

    rows = raw_db.execute("SELECT action, details FROM audit_logs WHERE tenant_id = %s", (first.tenant.id,)).fetchall()
    assert [action for action, _ in rows] == ["audit.purged"]
    assert rows[0][1]["deleted"] == old and rows[0][1]["via"] == "cli"
    # The other tenant's entries are young: untouched, and no purge recorded there.
    assert (
        raw_db.execute("SELECT count(*) FROM audit_logs WHERE tenant_id = %s", (second.tenant.id,)).fetchone()[0]
        == dict(before)[second.tenant.id]
    )


def test_flask_audit_purge_takes_a_date_and_refuses_the_future(cli, api, factory, raw_db):
    world = factory.world()
    api.login(world.owner)
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    assert_refused(cli("audit", "purge", "--before", tomorrow), "future")
    total = raw_db.execute("SELECT count(*) FROM audit_logs").fetchone()[0]
    assert total > 0
    result = cli("audit", "purge", "--before", "2000-01-01")
    assert result.exit_code == 0 and "Purged 0 audit entries" in result.output
    assert raw_db.execute("SELECT count(*) FROM audit_logs").fetchone()[0] == total


def test_flask_seed_refuses_production_unless_forced(make_app, factory, raw_db, monkeypatch):
    import secrets

    from config import ProductionConfig
    from wafaa import create_app

    monkeypatch.setenv("DATABASE_URL", make_app().config["SQLALCHEMY_DATABASE_URI"])
    monkeypatch.setenv("MIGRATION_DATABASE_URL", make_app().config["MIGRATION_DATABASE_URL"])
    monkeypatch.setenv("SEED_ADMIN_PASSWORD", secrets.token_urlsafe(16))
    monkeypatch.setenv("BCRYPT_ROUNDS", "12")
    app = create_app(ProductionConfig)
    runner = app.test_cli_runner()
    try:
        with app.app_context():
            refused = runner.invoke(args=["seed"])
        assert refused.exit_code == 1 and "--force" in refused.output
        assert raw_db.execute("SELECT count(*) FROM tenants").fetchone() == (0,)
        with app.app_context():
            forced = runner.invoke(args=["seed", "--force"])
        assert forced.exit_code == 0, forced.output
        assert raw_db.execute("SELECT count(*) FROM tenants").fetchone() == (3,)
    finally:
        from tests.conftest import dispose

        dispose(app)
