"""Logout, the caller's session list, revoking one session, and the account changes
that end sessions (deactivation, password change). In-process; the multi-worker and
restart cases are in test_auth_concurrency.py."""

from __future__ import annotations

import uuid

import jwt
import pytest
from psycopg.rows import dict_row

from tests.support import PASSWORD, error_of
from wafaa.extensions import db
from wafaa.models import TenantAdmin
from wafaa.services.admins import set_password
from wafaa.tenancy import system_scope

LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
REFRESH = "/api/v1/auth/refresh"
SESSIONS = "/api/v1/auth/sessions"
ME = "/api/v1/tenants/me"
NEW_PASSWORD = "a brand new passphrase"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login(client, admin, password: str = PASSWORD, user_agent: str | None = None) -> dict:
    headers = {"User-Agent": user_agent} if user_agent else {}
    response = client.post(LOGIN, json={"email": admin.email, "password": password}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def sid_of(app, token: str) -> str:
    return jwt.decode(token, app.config["JWT_SECRET_KEY"], algorithms=["HS256"])["sid"]


def assert_revoked(response) -> None:
    assert response.status_code == 401, response.get_json()
    assert error_of(response)["code"] == "token_revoked"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def assert_dead(client, tokens: dict) -> None:
    """Both tokens of a session are refused as revoked."""
    assert_revoked(client.get(ME, headers=bearer(tokens["access_token"])))
    assert_revoked(client.post(REFRESH, headers=bearer(tokens["refresh_token"])))


def assert_alive(client, tokens: dict) -> None:
    assert client.get(ME, headers=bearer(tokens["access_token"])).status_code == 200


def sessions_of(raw_db, admin_id) -> list[dict]:
    with raw_db.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM auth_sessions WHERE admin_id = %s ORDER BY created_at", (admin_id,))
        return cur.fetchall()


def audit_rows(raw_db, action: str) -> list[dict]:
    with raw_db.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM audit_logs WHERE action = %s ORDER BY created_at", (action,))
        return cur.fetchall()


# --- 6. logout -------------------------------------------------------------------


def test_logout_revokes_the_access_and_refresh_token_of_the_session(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    assert_alive(client, tokens)
    response = client.post(LOGOUT, headers=bearer(tokens["access_token"]))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_dead(client, tokens)
    assert_revoked(client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}))
    # Logging out twice is refused as well: the token is dead.
    assert_revoked(client.post(LOGOUT, headers=bearer(tokens["access_token"])))

    [row] = sessions_of(raw_db, admin.id)
    assert str(row["id"]) == sid_of(app, tokens["access_token"])
    assert row["revoked_at"] is not None and row["revoked_reason"] == "logout"


def test_logout_ends_only_its_own_session_by_default(client, factory):
    admin = factory.admin(factory.tenant())
    laptop, phone = login(client, admin), login(client, admin)
    assert client.post(LOGOUT, headers=bearer(laptop["access_token"]), json={}).status_code == 204
    assert_dead(client, laptop)
    assert_alive(client, phone)
    assert client.post(REFRESH, headers=bearer(phone["refresh_token"])).status_code == 200


def test_logout_writes_an_auth_logout_audit_row(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    assert client.post(LOGOUT, headers=bearer(tokens["access_token"])).status_code == 204
    [row] = audit_rows(raw_db, "auth.logout")
    assert row["tenant_id"] == admin.tenant_id
    assert row["user_id"] == admin.id
    assert row["resource_id"] == sid_of(app, tokens["access_token"])
    assert row["ip_address"] == "127.0.0.1"
    assert row["details"]["all_sessions"] is False
    assert row["details"]["sessions_revoked"] == 1


def test_logout_all_sessions_ends_every_session_of_the_admin_only(client, factory, raw_db):
    tenant = factory.tenant()
    admin = factory.admin(tenant, "admin")
    colleague = factory.admin(tenant, "owner")
    laptop, phone = login(client, admin), login(client, admin)
    colleague_tokens = login(client, colleague)

    response = client.post(LOGOUT, headers=bearer(laptop["access_token"]), json={"all_sessions": True})
    assert response.status_code == 204
    assert_dead(client, laptop)
    assert_dead(client, phone)
    assert_alive(client, colleague_tokens)
    assert client.post(REFRESH, headers=bearer(colleague_tokens["refresh_token"])).status_code == 200

    assert {row["revoked_reason"] for row in sessions_of(raw_db, admin.id)} == {"logout_all"}
    assert all(row["revoked_at"] is None for row in sessions_of(raw_db, colleague.id))
    [row] = audit_rows(raw_db, "auth.logout")
    assert row["details"]["all_sessions"] is True
    assert row["details"]["sessions_revoked"] == 2


def test_logout_with_a_refresh_token_is_token_invalid(client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    for kwargs in ({}, {"json": {"all_sessions": True}}):
        response = client.post(LOGOUT, headers=bearer(tokens["refresh_token"]), **kwargs)
        assert response.status_code == 401
        assert error_of(response)["code"] == "token_invalid"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing was revoked.
    assert_alive(client, tokens)
    assert all(row["revoked_at"] is None for row in sessions_of(raw_db, admin.id))


def test_logout_without_a_token_is_token_missing(client):
    response = client.post(LOGOUT)
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_missing"


# --- 7. the caller's sessions ------------------------------------------------------


def test_session_list_shows_the_callers_live_sessions_only(app, client, factory):
    tenant = factory.tenant()
    admin = factory.admin(tenant, "admin")
    colleague = factory.admin(tenant, "owner")
    stranger = factory.admin(factory.tenant())
    laptop = login(client, admin, user_agent="Laptop-Browser/1.0")
    phone = login(client, admin, user_agent="Phone-App/2.0")
    ended = login(client, admin, user_agent="Old-Tablet/0.1")
    assert client.post(LOGOUT, headers=bearer(ended["access_token"])).status_code == 204
    login(client, colleague)
    login(client, stranger)

    response = client.get(SESSIONS, headers=bearer(phone["access_token"]))
    assert response.status_code == 200
    sessions = response.get_json()
    by_id = {item["id"]: item for item in sessions}
    assert set(by_id) == {sid_of(app, laptop["access_token"]), sid_of(app, phone["access_token"])}
    for item in sessions:
        assert {"id", "created_at", "last_used_at", "ip_address", "user_agent", "current"} <= set(item)
        assert item["ip_address"] == "127.0.0.1"
        assert item["created_at"] and item["last_used_at"]
    assert [item["current"] for item in sessions].count(True) == 1
    assert by_id[sid_of(app, phone["access_token"])]["current"] is True
    assert by_id[sid_of(app, laptop["access_token"])]["current"] is False
    assert by_id[sid_of(app, phone["access_token"])]["user_agent"] == "Phone-App/2.0"
    assert by_id[sid_of(app, laptop["access_token"])]["user_agent"] == "Laptop-Browser/1.0"

    # Seen from the other session, the other one is current.
    other_view = client.get(SESSIONS, headers=bearer(laptop["access_token"])).get_json()
    assert [item["id"] for item in other_view if item["current"]] == [sid_of(app, laptop["access_token"])]


def test_session_list_leaves_out_expired_sessions(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    current, old = login(client, admin), login(client, admin)
    raw_db.execute(
        "UPDATE auth_sessions SET expires_at = now() - interval '1 minute' WHERE id = %s",
        (sid_of(app, old["access_token"]),),
    )
    sessions = client.get(SESSIONS, headers=bearer(current["access_token"])).get_json()
    assert [item["id"] for item in sessions] == [sid_of(app, current["access_token"])]


def test_revoking_one_of_your_sessions_kills_its_tokens_only(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    laptop, phone = login(client, admin), login(client, admin)
    phone_sid = sid_of(app, phone["access_token"])
    response = client.delete(f"{SESSIONS}/{phone_sid}", headers=bearer(laptop["access_token"]))
    assert response.status_code == 204
    assert_dead(client, phone)
    assert_alive(client, laptop)
    remaining = client.get(SESSIONS, headers=bearer(laptop["access_token"])).get_json()
    assert [item["id"] for item in remaining] == [sid_of(app, laptop["access_token"])]
    [row] = audit_rows(raw_db, "auth.session_revoked")
    assert row["resource_id"] == phone_sid and row["user_id"] == admin.id
    # Revoking it again: it is no longer a live session of yours.
    again = client.delete(f"{SESSIONS}/{phone_sid}", headers=bearer(laptop["access_token"]))
    assert again.status_code == 404


def test_revoking_your_current_session_logs_you_out(app, client, factory):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    sid = sid_of(app, tokens["access_token"])
    assert client.delete(f"{SESSIONS}/{sid}", headers=bearer(tokens["access_token"])).status_code == 204
    assert_dead(client, tokens)


@pytest.mark.parametrize("whose", ["colleague", "other-tenant"])
def test_another_admins_session_cannot_be_revoked(app, client, factory, raw_db, whose):
    tenant = factory.tenant()
    owner = factory.admin(tenant, "owner")
    victim = factory.admin(tenant, "viewer") if whose == "colleague" else factory.admin(factory.tenant())
    victim_tokens = login(client, victim)
    victim_sid = sid_of(app, victim_tokens["access_token"])
    owner_tokens = login(client, owner)

    response = client.delete(f"{SESSIONS}/{victim_sid}", headers=bearer(owner_tokens["access_token"]))
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert_alive(client, victim_tokens)
    assert all(row["revoked_at"] is None for row in sessions_of(raw_db, victim.id))
    assert audit_rows(raw_db, "auth.session_revoked") == []


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid", "12345", str(uuid.uuid4()).upper()])
def test_revoking_an_unknown_or_malformed_session_id_is_404(client, factory, session_id):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    response = client.delete(f"{SESSIONS}/{session_id}", headers=bearer(tokens["access_token"]))
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert_alive(client, tokens)


def test_session_endpoints_need_an_access_token(client, factory):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    for response in (
        client.get(SESSIONS),
        client.delete(f"{SESSIONS}/{uuid.uuid4()}"),
    ):
        assert response.status_code == 401
        assert error_of(response)["code"] == "token_missing"
    response = client.get(SESSIONS, headers=bearer(tokens["refresh_token"]))
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


# --- account changes that end sessions ----------------------------------------------


@pytest.mark.parametrize("how", ["patch", "deactivate"])
def test_deactivating_an_admin_revokes_their_sessions(client, factory, raw_db, how):
    tenant = factory.tenant()
    owner = factory.admin(tenant, "owner")
    target = factory.admin(tenant, "admin")
    first, second = login(client, target), login(client, target)
    owner_tokens = login(client, owner)
    headers = bearer(owner_tokens["access_token"])
    if how == "patch":
        response = client.patch(f"{ME}/admins/{target.id}", headers=headers, json={"is_active": False})
    else:
        response = client.post(f"{ME}/admins/{target.id}/deactivate", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["is_active"] is False

    assert_dead(client, first)
    assert_dead(client, second)
    assert {row["revoked_reason"] for row in sessions_of(raw_db, target.id)} == {"admin_deactivated"}
    assert_alive(client, owner_tokens)

    # Re-activation does not bring the old sessions back: they were revoked, not
    # merely blocked by the inactive flag.
    response = client.patch(f"{ME}/admins/{target.id}", headers=headers, json={"is_active": True})
    assert response.status_code == 200
    assert_dead(client, first)
    assert_alive(client, login(client, target))


def test_changing_a_password_revokes_every_session_of_the_admin(app, client, factory, raw_db):
    tenant = factory.tenant()
    target = factory.admin(tenant, "admin")
    colleague = factory.admin(tenant, "owner")
    first, second = login(client, target), login(client, target)
    colleague_tokens = login(client, colleague)

    # An operator's change (flask admins set-password): the request role cannot
    # write password hashes at all.
    with app.app_context(), system_scope("test: set a password"):
        admin = db.session.get(TenantAdmin, target.id)
        revoked = set_password(admin, NEW_PASSWORD)
    assert revoked == 2

    assert_dead(client, first)
    assert_dead(client, second)
    assert {row["revoked_reason"] for row in sessions_of(raw_db, target.id)} == {"password_changed"}
    assert_alive(client, colleague_tokens)
    old = client.post(LOGIN, json={"email": target.email, "password": PASSWORD})
    assert old.status_code == 401
    assert_alive(client, login(client, target, NEW_PASSWORD))


def test_tenant_deactivation_by_the_operator_revokes_its_sessions(app, runner, client, factory, raw_db):
    tenant = factory.tenant()
    admin = factory.admin(tenant)
    outsider = factory.admin(factory.tenant())
    tokens, outsider_tokens = login(client, admin), login(client, outsider)
    # The `flask` command pushes an app context for its commands; the test runner does not.
    with app.app_context():
        result = runner.invoke(args=["tenants", "deactivate", tenant.slug])
    assert result.exit_code == 0, result.output
    assert_dead(client, tokens)
    assert {row["revoked_reason"] for row in sessions_of(raw_db, admin.id)} == {"tenant_deactivated"}
    assert_alive(client, outsider_tokens)
    # Re-activated, the tenant's admins log in again, but the old session stays dead.
    with app.app_context():
        assert runner.invoke(args=["tenants", "activate", tenant.slug]).exit_code == 0
    assert_dead(client, tokens)
    assert_alive(client, login(client, admin))


@pytest.mark.parametrize("value", ["yes", "no", "on", "true", 1, 0, None])
def test_all_sessions_takes_json_booleans_only(client, factory, raw_db, value):
    """A string or number is refused (422) and nothing is revoked: "no" used to
    be read as a boolean, and "yes" ended every session."""
    admin = factory.admin(factory.tenant())
    tokens = [login(client, admin) for _ in range(2)]
    response = client.post(LOGOUT, headers=bearer(tokens[0]["access_token"]), json={"all_sessions": value})
    assert response.status_code == 422
    assert "all_sessions" in str(error_of(response)["details"])
    assert all(row["revoked_at"] is None for row in sessions_of(raw_db, admin.id))
