"""Limits on sessions and logins found by review: the absolute lifetime of a
session, and a lockout that holds when failed logins arrive all at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import jwt


def test_refresh_never_extends_a_session_past_its_absolute_limit(make_app, factory, raw_db):
    client = make_app(REFRESH_TOKEN_EXPIRE_DAYS="7", SESSION_MAX_DAYS="10").test_client()
    admin = factory.world().owner
    tokens = client.post("/api/v1/auth/login", json={"email": admin.email, "password": admin.password}).get_json()
    # The session began nine days ago: one day of its life is left.
    raw_db.execute("UPDATE auth_sessions SET created_at = now() - interval '9 days' WHERE admin_id = %s", (admin.id,))

    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    key = client.application.config["JWT_SECRET_KEY"]
    claims = jwt.decode(refreshed.get_json()["refresh_token"], key, algorithms=["HS256"])
    expires = datetime.fromtimestamp(claims["exp"], UTC)
    assert expires < datetime.now(UTC) + timedelta(days=1, minutes=5)  # not the sliding 7 days
    stored = raw_db.execute("SELECT expires_at - created_at FROM auth_sessions WHERE admin_id = %s", (admin.id,))
    assert stored.fetchone()[0] <= timedelta(days=10)


def test_concurrent_failed_logins_throttle_the_source_once_and_never_exceed_the_threshold(make_app, factory, raw_db):
    app = make_app(LOGIN_LOCKOUT_THRESHOLD="5", LOGIN_THROTTLE_BASE_SECONDS="60")
    admin = factory.world().owner
    statuses = []

    def attempt() -> None:
        response = app.test_client().post(
            "/api/v1/auth/login", json={"email": admin.email, "password": "not the password at all"}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [401] * 12
    # One collapsed row per reason, counting every attempt.
    reasons = raw_db.execute(
        "SELECT details ->> 'reason', sum((details ->> 'count')::int), count(*) FROM audit_logs"
        " WHERE action = 'auth.login_failed' AND resource_id = %s GROUP BY 1",
        (str(admin.id),),
    ).fetchall()
    assert {reason: (total, rows) for reason, total, rows in reasons} == {"bad_password": (5, 1), "throttled": (7, 1)}
    throttled = raw_db.execute(
        "SELECT count(*) FROM audit_logs WHERE action = 'auth.login_throttled' AND resource_id = %s",
        (str(admin.id),),
    ).fetchone()
    assert throttled == (1,)
    assert raw_db.execute("SELECT failures FROM login_throttles WHERE admin_id = %s", (admin.id,)).fetchall() == [(5,)]


def test_a_token_verified_before_still_expires_and_still_gets_revoked(app, api, factory):
    """Repeats of an access token skip re-decoding (wafaa.security.VerifiedTokens),
    never the time checks nor the revocation check."""
    import time

    from flask_jwt_extended import create_access_token, decode_token

    admin = factory.world().owner
    tokens = api.login(admin)
    with app.test_request_context():
        claims = decode_token(tokens["access_token"])
        short = create_access_token(
            str(admin.id),
            additional_claims={"tid": claims["tid"], "sid": claims["sid"]},
            expires_delta=timedelta(seconds=2),
        )
    assert api.get("/api/v1/tenants/me", token=short).status_code == 200
    assert api.get("/api/v1/tenants/me", token=short).status_code == 200  # the repeat
    time.sleep(2.5)
    expired = api.get("/api/v1/tenants/me", token=short)
    assert expired.status_code == 401
    assert expired.get_json()["error"]["code"] == "token_expired"

    assert api.get("/api/v1/tenants/me", token=tokens["access_token"]).status_code == 200
    assert api.post("/api/v1/auth/logout", token=tokens["access_token"]).status_code == 204
    revoked = api.get("/api/v1/tenants/me", token=tokens["access_token"])
    assert revoked.status_code == 401
    assert revoked.get_json()["error"]["code"] == "token_revoked"


def test_a_password_changed_during_the_password_check_refuses_the_login(api, factory, raw_db, monkeypatch):
    """An operator resets the password while a login with the old one is inside
    bcrypt: the login must not start a session with the old password."""
    import bcrypt

    import wafaa.services.sessions as sessions

    admin = factory.world().owner
    real_hash = sessions.hash_with_salt

    def hash_then_reset(password, salt):
        result = real_hash(password, salt)  # the real hashing, with the old salt
        new_hash = bcrypt.hashpw(b"a brand new password!", bcrypt.gensalt(4)).decode()
        raw_db.execute("UPDATE tenant_admins SET password_hash = %s WHERE id = %s", (new_hash, admin.id))
        return result

    monkeypatch.setattr(sessions, "hash_with_salt", hash_then_reset)
    response = api.post("/api/v1/auth/login", json={"email": admin.email, "password": admin.password})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_credentials"
    assert raw_db.execute("SELECT count(*) FROM auth_sessions WHERE admin_id = %s", (admin.id,)).fetchone() == (0,)
    reasons = raw_db.execute(
        "SELECT details ->> 'reason' FROM audit_logs WHERE action = 'auth.login_failed' AND resource_id = %s",
        (str(admin.id),),
    ).fetchall()
    assert reasons == [("bad_password",)]
