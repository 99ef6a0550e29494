"""POST /api/v1/auth/login: tokens and sessions on success, one indistinguishable 401
on every failure, one bcrypt check per attempt, and passwords handled byte-exactly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
import pytest
from psycopg.rows import dict_row

from tests.support import PASSWORD, error_of

LOGIN = "/api/v1/auth/login"
TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
CLAIMS = {"sub", "tid", "sid", "jti", "type", "iat", "exp"}


# --- helpers -------------------------------------------------------------------


class BcryptCalls:
    def __init__(self) -> None:
        self.counts = {"checkpw": 0, "hashpw": 0}

    def reset(self) -> None:
        self.counts = {"checkpw": 0, "hashpw": 0}


@pytest.fixture
def bcrypt_calls(monkeypatch) -> BcryptCalls:
    """Counts bcrypt.checkpw and bcrypt.hashpw calls; the real functions still run."""
    calls = BcryptCalls()
    real_checkpw, real_hashpw = bcrypt.checkpw, bcrypt.hashpw

    def checkpw(password, hashed):
        calls.counts["checkpw"] += 1
        return real_checkpw(password, hashed)

    def hashpw(password, salt):
        calls.counts["hashpw"] += 1
        return real_hashpw(password, salt)

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    monkeypatch.setattr(bcrypt, "hashpw", hashpw)
    return calls


def decode(app, token: str) -> dict:
    return jwt.decode(token, app.config["JWT_SECRET_KEY"], algorithms=["HS256"])


def audit_rows(raw_db, action: str | None = None) -> list[dict]:
    with raw_db.cursor(row_factory=dict_row) as cur:
        if action is None:
            cur.execute("SELECT * FROM audit_logs ORDER BY created_at")
        else:
            cur.execute("SELECT * FROM audit_logs WHERE action = %s ORDER BY created_at", (action,))
        return cur.fetchall()


def events(raw_db) -> list[str]:
    """Audited actions, oldest first, without the rows the factory's inserts wrote."""
    return [r["action"] for r in audit_rows(raw_db) if r["action"] not in ("tenant.created", "admin.created")]


def stored_hash(raw_db, admin_id: uuid.UUID) -> str:
    return raw_db.execute("SELECT password_hash FROM tenant_admins WHERE id = %s", (admin_id,)).fetchone()[0]


def post_login(client, email, password):
    return client.post(LOGIN, json={"email": email, "password": password})


def failed_login(response) -> tuple[dict, str]:
    """The error (without its request id) and WWW-Authenticate of a failed login."""
    assert response.status_code == 401, response.get_json()
    error = error_of(response)
    assert error["code"] == "invalid_credentials"
    error.pop("request_id")
    return error, response.headers["WWW-Authenticate"]


# --- 1. successful login -------------------------------------------------------


def test_login_returns_bearer_token_pair_with_default_lifetime(app, client, factory):
    admin = factory.admin(factory.tenant())
    response = post_login(client, admin.email, PASSWORD)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    access, refresh = decode(app, body["access_token"]), decode(app, body["refresh_token"])
    assert access["type"] == "access" and refresh["type"] == "refresh"
    assert access["sub"] == refresh["sub"] == str(admin.id)
    # The access token works at once.
    me = client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.get_json()["id"] == str(admin.tenant_id)


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda e: e.upper(), id="upper-case"),
        pytest.param(lambda e: f"  {e}  ", id="surrounding-spaces"),
        pytest.param(lambda e: f"\t{e.title()}\n", id="tabs-newline-title-case"),
    ],
)
def test_email_is_matched_case_insensitively_and_trimmed(client, factory, typed):
    admin = factory.admin(factory.tenant())
    response = post_login(client, typed(admin.email), PASSWORD)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda p: p.upper(), id="upper-case"),
        pytest.param(lambda p: p.capitalize(), id="first-letter-capital"),
        pytest.param(lambda p: f" {p}", id="leading-space"),
        pytest.param(lambda p: f"{p} ", id="trailing-space"),
        pytest.param(lambda p: f"{p}\n", id="trailing-newline"),
        pytest.param(lambda p: p[:-1], id="one-character-short"),
    ],
)
def test_password_must_match_exactly(client, factory, typed):
    admin = factory.admin(factory.tenant())
    assert typed(PASSWORD) != PASSWORD
    assert post_login(client, admin.email, typed(PASSWORD)).status_code == 401
    # Control: the exact password works.
    assert post_login(client, admin.email, PASSWORD).status_code == 200


def test_password_with_surrounding_spaces_is_not_trimmed(client, factory):
    password = "  spaced out password  "
    admin = factory.admin(factory.tenant(), password=password)
    assert post_login(client, admin.email, password.strip()).status_code == 401
    assert post_login(client, admin.email, password).status_code == 200


def test_login_updates_last_login_and_writes_auth_login_audit_row(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    assert raw_db.execute("SELECT last_login FROM tenant_admins WHERE id = %s", (admin.id,)).fetchone()[0] is None
    before = datetime.now(UTC)
    response = post_login(client, admin.email, PASSWORD)
    assert response.status_code == 200
    sid = decode(app, response.get_json()["access_token"])["sid"]

    last_login = raw_db.execute("SELECT last_login FROM tenant_admins WHERE id = %s", (admin.id,)).fetchone()[0]
    assert last_login is not None
    assert before - timedelta(seconds=5) <= last_login <= datetime.now(UTC) + timedelta(seconds=5)

    rows = audit_rows(raw_db, "auth.login")
    assert len(rows) == 1
    row = rows[0]
    assert row["tenant_id"] == admin.tenant_id
    assert row["user_id"] == admin.id
    assert row["ip_address"] == "127.0.0.1"
    assert row["resource_type"] == "session"
    assert row["resource_id"] == sid
    # A login is not an admin change: no admin.* row for the last_login bookkeeping.
    assert events(raw_db) == ["auth.login"]


def test_login_is_visible_in_the_tenant_audit_log_api(api, factory):
    tenant = factory.tenant()
    owner = factory.admin(tenant, "owner")
    viewer = factory.admin(tenant, "viewer")
    api.login(viewer)
    response = api.get("/api/v1/tenants/me/audit-logs?action=auth.login", owner)
    assert response.status_code == 200
    logins = response.get_json()["items"]
    # The viewer's login and the owner's own (made by the api helper for this request).
    assert sorted(item["user_id"] for item in logins) == sorted([str(viewer.id), str(owner.id)])
    assert all(item["ip_address"] == "127.0.0.1" for item in logins)


# --- 2. failures say nothing ---------------------------------------------------


def test_every_failed_login_gets_the_same_answer(client, factory):
    tenant = factory.tenant()
    active = factory.admin(tenant)
    inactive_admin = factory.admin(tenant, "admin", is_active=False)
    inactive_tenant_admin = factory.admin(factory.tenant(is_active=False))

    responses = {
        "wrong password": post_login(client, active.email, PASSWORD + "!"),
        "unknown email": post_login(client, f"nobody-{uuid.uuid4().hex}@nowhere.test", PASSWORD),
        "inactive admin": post_login(client, inactive_admin.email, PASSWORD),
        "inactive admin, wrong password": post_login(client, inactive_admin.email, "not the password"),
        "admin of inactive tenant": post_login(client, inactive_tenant_admin.email, PASSWORD),
    }
    answers = {name: failed_login(r) for name, r in responses.items()}
    reference = answers["wrong password"]
    for name, answer in answers.items():
        assert answer == reference, name
    assert reference[1].startswith("Bearer")
    # The same headers too (apart from values that differ per request).
    header_names = {name: {h for h, _ in r.headers} for name, r in responses.items()}
    assert len({frozenset(names) for names in header_names.values()}) == 1, header_names
    # Request ids do differ: the comparison above really excluded only them.
    assert len({r.headers["X-Request-ID"] for r in responses.values()}) == len(responses)


def test_failed_logins_of_known_accounts_are_audited_and_unknown_emails_are_not(client, factory, raw_db):
    tenant = factory.tenant()
    active = factory.admin(tenant)
    inactive = factory.admin(tenant, "viewer", is_active=False)
    closed = factory.admin(factory.tenant(is_active=False))

    assert post_login(client, f"ghost-{uuid.uuid4().hex}@nowhere.test", PASSWORD).status_code == 401
    assert events(raw_db) == []

    assert post_login(client, active.email, "wrong password!!").status_code == 401
    assert post_login(client, inactive.email, PASSWORD).status_code == 401
    assert post_login(client, closed.email, PASSWORD).status_code == 401

    assert events(raw_db) == ["auth.login_failed"] * 3
    rows = audit_rows(raw_db, "auth.login_failed")
    assert [(r["tenant_id"], r["user_id"]) for r in rows] == [
        (active.tenant_id, active.id),
        (inactive.tenant_id, inactive.id),
        (closed.tenant_id, closed.id),
    ]
    assert all(r["ip_address"] == "127.0.0.1" for r in rows)
    # No session was created by any failure.
    assert raw_db.execute("SELECT count(*) FROM auth_sessions").fetchone()[0] == 0


def test_every_login_attempt_costs_exactly_one_bcrypt_check(client, factory, bcrypt_calls):
    tenant = factory.tenant()
    active = factory.admin(tenant)
    inactive = factory.admin(tenant, "admin", is_active=False)
    closed = factory.admin(factory.tenant(is_active=False))
    attempts = {
        "success": (active.email, PASSWORD, 200),
        "wrong password": (active.email, "wrong password!!", 401),
        "unknown email": (f"ghost-{uuid.uuid4().hex}@nowhere.test", PASSWORD, 401),
        "unknown email again": (f"ghost-{uuid.uuid4().hex}@nowhere.test", "anything at all", 401),
        "inactive admin": (inactive.email, PASSWORD, 401),
        "inactive tenant": (closed.email, PASSWORD, 401),
        "password over 72 bytes": (active.email, PASSWORD + "x" * 60, 401),
    }
    for name, (email, password, status) in attempts.items():
        bcrypt_calls.reset()
        assert post_login(client, email, password).status_code == status, name
        assert bcrypt_calls.counts == {"checkpw": 0, "hashpw": 1}, name  # hashed with the salt, compared in SQL


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"email": "someone@example.test"}, id="missing-password"),
        pytest.param({"password": PASSWORD}, id="missing-email"),
        pytest.param({}, id="empty-object"),
        pytest.param({"email": 42, "password": PASSWORD}, id="email-number"),
        pytest.param({"email": "someone@example.test", "password": 123456789012}, id="password-number"),
        pytest.param({"email": "someone@example.test", "password": None}, id="password-null"),
        pytest.param({"email": "someone@example.test", "password": [PASSWORD]}, id="password-list"),
        pytest.param({"email": "someone@example.test", "password": PASSWORD, "role": "owner"}, id="unknown-field"),
        pytest.param(["someone@example.test", PASSWORD], id="json-array"),
        pytest.param("someone@example.test", id="json-string"),
        pytest.param(7, id="json-number"),
        # JSON "\ud800": valid JSON, but not text that UTF-8 (or bcrypt) can take.
        pytest.param({"email": "\ud800x", "password": PASSWORD}, id="email-lone-surrogate"),
        pytest.param({"email": "someone@example.test", "password": "\ud800x"}, id="password-lone-surrogate"),
    ],
)
def test_malformed_login_body_is_422_and_hashes_nothing(client, factory, bcrypt_calls, body):
    factory.admin(factory.tenant(), email="someone@example.test")
    bcrypt_calls.reset()
    response = client.post(LOGIN, json=body)
    assert response.status_code == 422, response.get_json()
    assert error_of(response)["code"] == "validation_error"
    assert bcrypt_calls.counts == {"checkpw": 0, "hashpw": 0}


# --- 3. passwords --------------------------------------------------------------


def test_cheaper_stored_hash_is_rehashed_at_the_configured_cost(make_app, factory, raw_db):
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    admin = factory.admin(factory.tenant(), password_hash=legacy)
    client = make_app(BCRYPT_ROUNDS="5").test_client()

    assert post_login(client, admin.email, PASSWORD).status_code == 200
    upgraded = stored_hash(raw_db, admin.id)
    assert upgraded != legacy
    assert upgraded.split("$")[2] == "05"
    assert bcrypt.checkpw(PASSWORD.encode(), upgraded.encode())
    # A re-hash is not a password change: nothing but the login is audited.
    assert events(raw_db) == ["auth.login"]
    assert audit_rows(raw_db, "admin.password_changed") == []

    # The same password still works, and an up-to-date hash is left alone.
    assert post_login(client, admin.email, PASSWORD).status_code == 200
    assert stored_hash(raw_db, admin.id) == upgraded
    assert post_login(client, admin.email, "wrong password!!").status_code == 401


def test_hash_at_or_above_the_configured_cost_is_not_rehashed(make_app, factory, raw_db):
    costlier = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(6)).decode()
    admin = factory.admin(factory.tenant(), password_hash=costlier)
    client = make_app(BCRYPT_ROUNDS="5").test_client()
    assert post_login(client, admin.email, PASSWORD).status_code == 200
    assert stored_hash(raw_db, admin.id) == costlier


def test_legacy_password_below_todays_minimum_length_still_logs_in_when_rehashed(make_app, factory, raw_db):
    # A password set before the 12-character rule, stored at a cost below today's:
    # the login (which re-hashes it) must succeed, not fail on the new-password rules.
    short = "legacy-pw"
    legacy = bcrypt.hashpw(short.encode(), bcrypt.gensalt(4)).decode()
    admin = factory.admin(factory.tenant(), password_hash=legacy)
    client = make_app(BCRYPT_ROUNDS="5").test_client()
    response = post_login(client, admin.email, short)
    assert response.status_code == 200, response.get_json()
    assert post_login(client, admin.email, short).status_code == 200


def test_password_of_exactly_72_bytes_works_and_one_more_byte_is_refused(client, factory):
    password = "p" * 72
    admin = factory.admin(factory.tenant(), password=password)
    assert post_login(client, admin.email, password).status_code == 200
    # bcrypt would ignore the 73rd byte: it must not be silently truncated.
    response = post_login(client, admin.email, password + "x")
    failed_login(response)


def test_multibyte_passwords_are_measured_in_utf8_bytes(client, factory):
    ok = "é" * 30  # 60 bytes
    admin = factory.admin(factory.tenant(), password=ok)
    assert post_login(client, admin.email, ok).status_code == 200

    at_limit = "é" * 36  # 72 bytes
    other = factory.admin(factory.tenant(), password=at_limit)
    assert post_login(client, other.email, at_limit).status_code == 200
    # 40 characters, 80 bytes; and 37 characters, 74 bytes whose first 72 are right.
    for too_long in ("é" * 40, "é" * 37):
        failed_login(post_login(client, other.email, too_long))


@pytest.mark.parametrize("length", [73, 100, 1000, 10_000])
def test_overlong_password_is_an_ordinary_failed_login(client, factory, length):
    admin = factory.admin(factory.tenant())
    failed_login(post_login(client, admin.email, (PASSWORD * 400)[:length]))


@pytest.mark.parametrize("password", [f"{PASSWORD}\x00", f"\x00{PASSWORD}", "abc\x00def-ghijkl"])
def test_nul_in_password_is_refused_without_a_server_error(client, factory, password):
    admin = factory.admin(factory.tenant())
    response = post_login(client, admin.email, password)
    assert response.status_code in (401, 422), response.get_json()
    error_of(response)


def test_no_password_hash_or_token_leaks_into_responses(app, client, factory, raw_db):
    tenant = factory.tenant()
    owner = factory.admin(tenant, "owner")
    other = factory.admin(tenant, "viewer")
    tokens = post_login(client, owner.email, PASSWORD).get_json()
    other_tokens = post_login(client, other.email, PASSWORD).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    secrets = {
        PASSWORD,
        stored_hash(raw_db, owner.id),
        stored_hash(raw_db, other.id),
        tokens["access_token"],
        tokens["refresh_token"],
        other_tokens["access_token"],
        other_tokens["refresh_token"],
        *(row[0] for row in raw_db.execute("SELECT refresh_jti FROM auth_sessions")),
    }
    responses = [
        post_login(client, owner.email, PASSWORD + "x"),
        post_login(client, owner.email, PASSWORD * 4),
        post_login(client, "nobody@nowhere.test", PASSWORD),
        client.post(LOGIN, json={"email": owner.email, "password": PASSWORD, "extra": PASSWORD}),
        client.post(LOGIN, json={"email": owner.email}),
        client.get("/api/v1/tenants/me", headers=bearer),
        client.get("/api/v1/tenants/me/admins", headers=bearer),
        client.get(f"/api/v1/tenants/me/admins/{owner.id}", headers=bearer),
        client.get("/api/v1/tenants/me/audit-logs?page_size=100", headers=bearer),
        client.get("/api/v1/auth/sessions", headers=bearer),
        client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {tokens['access_token']}"}),
    ]
    for response in responses:
        assert response.status_code < 500
        text = response.get_data(as_text=True)
        for secret in secrets:
            assert secret not in text, (response.request.path, response.status_code)
        assert "$2b$" not in text


def test_login_session_row_matches_the_token_claims(app, client, factory, raw_db):
    admin = factory.admin(factory.tenant())
    body = post_login(client, admin.email, PASSWORD).get_json()
    access, refresh = decode(app, body["access_token"]), decode(app, body["refresh_token"])
    assert CLAIMS <= set(access) and CLAIMS <= set(refresh)
    with raw_db.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM auth_sessions")
        rows = cur.fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert str(row["id"]) == access["sid"] == refresh["sid"]
    assert row["admin_id"] == admin.id and row["tenant_id"] == admin.tenant_id
    assert row["refresh_jti"] == refresh["jti"]
    assert row["revoked_at"] is None
    assert row["ip_address"] == "127.0.0.1"
    assert abs(row["expires_at"].timestamp() - refresh["exp"]) <= 2
