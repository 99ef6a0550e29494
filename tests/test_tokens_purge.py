"""`flask tokens purge`: deletes expired sessions and sessions revoked longer ago than
SESSION_RETENTION_DAYS; keeps live and recently revoked ones; says how many it deleted."""

from __future__ import annotations

from tests.support import PASSWORD

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/tenants/me"


def new_session(client, admin) -> tuple[str, str]:
    """Logs in; returns (session id, access token)."""
    response = client.post(LOGIN, json={"email": admin.email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    access = response.get_json()["access_token"]
    sid = client.get("/api/v1/auth/sessions", headers={"Authorization": f"Bearer {access}"}).get_json()
    [current] = [s["id"] for s in sid if s["current"]]
    return current, access


def set_times(raw_db, sid: str, *, expires: str | None = None, revoked: str | None = None) -> None:
    """Move a session's expiry or revocation into the past (an interval before now)."""
    if expires is not None:
        raw_db.execute("UPDATE auth_sessions SET expires_at = now() - %s::interval WHERE id = %s", (expires, sid))
    if revoked is not None:
        raw_db.execute(
            "UPDATE auth_sessions SET revoked_at = now() - %s::interval, revoked_reason = 'logout' WHERE id = %s",
            (revoked, sid),
        )


def session_ids(raw_db) -> set[str]:
    return {str(row[0]) for row in raw_db.execute("SELECT id FROM auth_sessions")}


def purge(app) -> str:
    # The `flask` command pushes an app context for its commands; the test runner does not.
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["tokens", "purge"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_purge_deletes_expired_and_long_revoked_sessions_only(app, client, factory, raw_db):
    tenant = factory.tenant()
    admin = factory.admin(tenant)
    other_tenant_admin = factory.admin(factory.tenant())
    live, live_token = new_session(client, admin)
    live_elsewhere, _ = new_session(client, other_tenant_admin)
    expired, _ = new_session(client, admin)
    expired_elsewhere, _ = new_session(client, other_tenant_admin)
    revoked_long_ago, _ = new_session(client, admin)
    revoked_recently, _ = new_session(client, admin)
    revoked_just_now, _ = new_session(client, admin)
    set_times(raw_db, expired, expires="1 second")
    set_times(raw_db, expired_elsewhere, expires="3 days")
    set_times(raw_db, revoked_long_ago, revoked="31 days")
    set_times(raw_db, revoked_recently, revoked="29 days")
    set_times(raw_db, revoked_just_now, revoked="1 second")
    assert app.config["SESSION_RETENTION_DAYS"] == 30

    assert purge(app) == "Purged 3 sessions."
    assert session_ids(raw_db) == {live, live_elsewhere, revoked_recently, revoked_just_now}
    # The live session still works.
    assert client.get(ME, headers={"Authorization": f"Bearer {live_token}"}).status_code == 200

    # Running it again finds nothing more to delete.
    assert purge(app) == "Purged 0 sessions."
    assert len(session_ids(raw_db)) == 4


def test_purge_with_nothing_to_delete_says_zero(app, client, factory, raw_db):
    new_session(client, factory.admin(factory.tenant()))
    assert purge(app) == "Purged 0 sessions."
    assert len(session_ids(raw_db)) == 1


def test_purge_follows_the_configured_retention(make_app, factory, raw_db):
    app = make_app(SESSION_RETENTION_DAYS="5")
    client = app.test_client()
    admin = factory.admin(factory.tenant())
    kept, _ = new_session(client, admin)
    gone, _ = new_session(client, admin)
    set_times(raw_db, kept, revoked="4 days")
    set_times(raw_db, gone, revoked="6 days")
    assert purge(app) == "Purged 1 sessions."
    assert session_ids(raw_db) == {kept}


def test_purge_keeps_the_admins_and_audit_log(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    sid, _ = new_session(client, admin)
    set_times(raw_db, sid, expires="1 hour")
    audit_before = raw_db.execute("SELECT count(*) FROM audit_logs").fetchone()[0]
    assert purge(app) == "Purged 1 sessions."
    assert raw_db.execute("SELECT count(*) FROM tenant_admins WHERE id = %s", (admin.id,)).fetchone()[0] == 1
    assert raw_db.execute("SELECT count(*) FROM audit_logs").fetchone()[0] == audit_before
    # The admin can log in again.
    new_session(client, admin)
