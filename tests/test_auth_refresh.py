"""Token claims and lifetimes, and POST /api/v1/auth/refresh: rotation, the reuse grace
window, reuse detection that revokes the whole session, and role changes that take
effect on existing tokens (authorization reads the database, not the claims)."""

from __future__ import annotations

import time

import jwt
import pytest
from psycopg.rows import dict_row

from tests.support import PASSWORD, error_of

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/tenants/me"
CLAIMS = {"sub", "tid", "sid", "jti", "type", "iat", "exp"}
DAY = 24 * 3600


def decode(app, token: str) -> dict:
    return jwt.decode(token, app.config["JWT_SECRET_KEY"], algorithms=["HS256"])


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login(client, admin) -> dict:
    response = client.post(LOGIN, json={"email": admin.email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refresh_by_header(client, refresh_token: str):
    return client.post(REFRESH, headers=bearer(refresh_token))


def assert_revoked(response) -> None:
    assert response.status_code == 401, response.get_json()
    assert error_of(response)["code"] == "token_revoked"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def session_row(raw_db, sid: str) -> dict:
    with raw_db.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM auth_sessions WHERE id = %s", (sid,))
        return cur.fetchone()


# --- 4. claims and lifetimes -----------------------------------------------------


def test_access_and_refresh_tokens_carry_every_claim_with_default_lifetimes(app, client, factory):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "HS256"
    access, refresh = decode(app, tokens["access_token"]), decode(app, tokens["refresh_token"])
    for claims, kind in ((access, "access"), (refresh, "refresh")):
        assert CLAIMS <= set(claims), kind
        assert claims["type"] == kind
        assert claims["sub"] == str(admin.id)
        assert claims["tid"] == str(admin.tenant_id)
        assert isinstance(claims["jti"], str) and claims["jti"]
        assert abs(claims["iat"] - time.time()) < 60
    assert access["sid"] == refresh["sid"]
    assert access["jti"] != refresh["jti"]
    assert access["exp"] - access["iat"] == 30 * 60
    assert 7 * DAY - 5 <= refresh["exp"] - refresh["iat"] <= 7 * DAY


def test_token_lifetimes_come_from_the_environment(make_app, factory):
    app = make_app(ACCESS_TOKEN_EXPIRE_MINUTES="5", REFRESH_TOKEN_EXPIRE_DAYS="2")
    client = app.test_client()
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    assert tokens["expires_in"] == 300
    access, refresh = decode(app, tokens["access_token"]), decode(app, tokens["refresh_token"])
    assert access["exp"] - access["iat"] == 300
    assert 2 * DAY - 5 <= refresh["exp"] - refresh["iat"] <= 2 * DAY
    # A refreshed pair has the configured lifetimes too.
    refreshed = refresh_by_header(client, tokens["refresh_token"]).get_json()
    assert refreshed["expires_in"] == 300
    new_refresh = decode(app, refreshed["refresh_token"])
    assert 2 * DAY - 5 <= new_refresh["exp"] - new_refresh["iat"] <= 2 * DAY


def test_demoted_admins_existing_token_loses_the_old_rights(client, factory):
    tenant = factory.tenant()
    owner = factory.admin(tenant, "owner")
    admin = factory.admin(tenant, "admin")
    admin_token = login(client, admin)["access_token"]
    owner_token = login(client, owner)["access_token"]

    # As an admin, the token may change the tenant.
    assert client.patch(ME, headers=bearer(admin_token), json={"name": "Renamed by admin"}).status_code == 200

    demoted = client.patch(f"{ME}/admins/{admin.id}", headers=bearer(owner_token), json={"role": "viewer"})
    assert demoted.status_code == 200
    assert demoted.get_json()["role"] == "viewer"

    # The very same token, unchanged claims, is now a viewer's.
    response = client.patch(ME, headers=bearer(admin_token), json={"name": "Renamed by viewer"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    assert client.get(ME, headers=bearer(admin_token)).get_json()["name"] == "Renamed by admin"


def test_promoted_viewers_existing_token_gains_the_new_rights(client, factory):
    tenant = factory.tenant()
    owner = factory.admin(tenant, "owner")
    viewer = factory.admin(tenant, "viewer")
    viewer_token = login(client, viewer)["access_token"]
    assert client.patch(ME, headers=bearer(viewer_token), json={"name": "Nope"}).status_code == 403
    promoted = client.patch(
        f"{ME}/admins/{viewer.id}", headers=bearer(login(client, owner)["access_token"]), json={"role": "admin"}
    )
    assert promoted.status_code == 200
    assert client.patch(ME, headers=bearer(viewer_token), json={"name": "Now allowed"}).status_code == 200


# --- 5. refresh and rotation --------------------------------------------------------


@pytest.mark.parametrize("how", ["header", "body"])
def test_refresh_returns_a_new_pair_and_rotates_the_session(app, client, factory, raw_db, how):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    old = decode(app, tokens["refresh_token"])
    if how == "header":
        response = refresh_by_header(client, tokens["refresh_token"])
    else:
        response = client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1800
    access, refresh = decode(app, body["access_token"]), decode(app, body["refresh_token"])
    assert access["type"] == "access" and refresh["type"] == "refresh"
    assert access["sid"] == refresh["sid"] == old["sid"]
    assert refresh["jti"] != old["jti"]
    assert body["access_token"] != tokens["access_token"]

    row = session_row(raw_db, old["sid"])
    assert row["refresh_jti"] == refresh["jti"]
    assert row["previous_refresh_jti"] == old["jti"]
    assert row["rotated_at"] is not None and row["revoked_at"] is None

    assert client.get(ME, headers=bearer(body["access_token"])).status_code == 200
    # The new refresh token is the one to use next.
    assert refresh_by_header(client, body["refresh_token"]).status_code == 200


def test_refresh_token_in_body_works_without_any_authorization_header(client, factory):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    first = client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    second = client.post(REFRESH, json={"refresh_token": first.get_json()["refresh_token"]})
    assert second.status_code == 200


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic Zm9vOmJhcg==", "garbage"])
def test_with_an_authorization_header_the_body_token_is_not_read(client, factory, header):
    """One method per request (RFC 6750, 2): a request that sends an Authorization
    header is judged by it alone, even with a valid refresh token in its body."""
    tokens = login(client, factory.admin(factory.tenant()))
    response = client.post(REFRESH, headers={"Authorization": header}, json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 401
    assert error_of(response)["code"] in ("token_invalid", "token_missing")


def test_refresh_slides_the_session_expiry(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    sid = decode(app, tokens["refresh_token"])["sid"]
    raw_db.execute("UPDATE auth_sessions SET expires_at = now() + interval '1 hour' WHERE id = %s", (sid,))
    response = refresh_by_header(client, tokens["refresh_token"])
    assert response.status_code == 200
    new_exp = decode(app, response.get_json()["refresh_token"])["exp"]
    row = session_row(raw_db, sid)
    assert abs(row["expires_at"].timestamp() - new_exp) <= 2
    assert new_exp - time.time() > 6 * DAY


def test_access_token_cannot_refresh_and_refresh_token_cannot_access(client, factory):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    for response in (
        refresh_by_header(client, tokens["access_token"]),
        client.post(REFRESH, json={"refresh_token": tokens["access_token"]}),
        client.get(ME, headers=bearer(tokens["refresh_token"])),
    ):
        assert response.status_code == 401
        assert error_of(response)["code"] == "token_invalid"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Neither misuse harmed the session.
    assert client.get(ME, headers=bearer(tokens["access_token"])).status_code == 200
    assert refresh_by_header(client, tokens["refresh_token"]).status_code == 200


def test_replay_after_the_grace_window_revokes_the_whole_session(make_app, factory, raw_db):
    app = make_app(REFRESH_REUSE_GRACE_SECONDS="0")
    client = app.test_client()
    admin = factory.admin(factory.tenant())
    stolen = login(client, admin)
    sid = decode(app, stolen["refresh_token"])["sid"]

    # The victim refreshes; the copy of the old refresh token is now stale.
    victim = refresh_by_header(client, stolen["refresh_token"]).get_json()
    assert client.get(ME, headers=bearer(victim["access_token"])).status_code == 200

    # The thief replays the old token: refused, and the whole family dies.
    assert_revoked(refresh_by_header(client, stolen["refresh_token"]))
    assert_revoked(client.get(ME, headers=bearer(victim["access_token"])))
    assert_revoked(refresh_by_header(client, victim["refresh_token"]))
    assert_revoked(client.get(ME, headers=bearer(stolen["access_token"])))

    row = session_row(raw_db, sid)
    assert row["revoked_at"] is not None
    assert row["revoked_reason"] == "refresh_reuse"
    with raw_db.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM audit_logs WHERE action = 'auth.refresh_reuse_detected'")
        rows = cur.fetchall()
    assert len(rows) == 1
    assert rows[0]["tenant_id"] == admin.tenant_id
    assert rows[0]["user_id"] == admin.id
    assert rows[0]["resource_id"] == sid

    # The account itself is fine: a new login works.
    assert client.get(ME, headers=bearer(login(client, admin)["access_token"])).status_code == 200


def test_reuse_detection_does_not_touch_the_admins_other_sessions(make_app, factory, raw_db):
    app = make_app(REFRESH_REUSE_GRACE_SECONDS="0")
    client = app.test_client()
    admin = factory.admin(factory.tenant())
    laptop, phone = login(client, admin), login(client, admin)
    refresh_by_header(client, laptop["refresh_token"])
    assert_revoked(refresh_by_header(client, laptop["refresh_token"]))
    assert client.get(ME, headers=bearer(phone["access_token"])).status_code == 200
    assert refresh_by_header(client, phone["refresh_token"]).status_code == 200


def test_replay_within_the_grace_window_is_forgiven(app, client, factory, raw_db):
    assert app.config["REFRESH_REUSE_GRACE_SECONDS"] == 10
    admin = factory.admin(factory.tenant())
    first = login(client, admin)
    sid = decode(app, first["refresh_token"])["sid"]
    second = refresh_by_header(client, first["refresh_token"]).get_json()

    # A second tab sends the token the first tab just rotated.
    replay = refresh_by_header(client, first["refresh_token"])
    assert replay.status_code == 200, replay.get_json()
    replayed = replay.get_json()
    # It gets an access token, and never the family's live refresh token: a thief
    # replaying a stolen one inside the window must not walk away with it.
    assert set(replayed) == {"access_token", "token_type", "expires_in"}
    assert decode(app, replayed["access_token"])["sid"] == sid
    assert session_row(raw_db, sid)["revoked_at"] is None
    for token in (first["access_token"], second["access_token"], replayed["access_token"]):
        assert client.get(ME, headers=bearer(token)).status_code == 200
    assert refresh_by_header(client, second["refresh_token"]).status_code == 200
    with raw_db.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_logs WHERE action = 'auth.refresh_reuse_detected'")
        assert cur.fetchone()[0] == 0
        # The replay is on record.
        cur.execute("SELECT resource_id, user_id FROM audit_logs WHERE action = 'auth.refresh_grace_replay'")
        assert cur.fetchall() == [(sid, admin.id)]


def test_token_two_rotations_old_is_reuse_even_within_the_grace_window(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    first = login(client, admin)
    second = refresh_by_header(client, first["refresh_token"]).get_json()
    third = refresh_by_header(client, second["refresh_token"]).get_json()
    assert_revoked(refresh_by_header(client, first["refresh_token"]))
    assert_revoked(client.get(ME, headers=bearer(third["access_token"])))
    assert_revoked(refresh_by_header(client, third["refresh_token"]))


def test_refresh_of_a_logged_out_session_is_revoked(client, factory):
    admin = factory.admin(factory.tenant())
    tokens = login(client, admin)
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"])).status_code == 204
    assert_revoked(refresh_by_header(client, tokens["refresh_token"]))
    assert_revoked(client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}))
