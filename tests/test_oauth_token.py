"""POST /api/v1/auth/token: the login for OAuth 2 clients (RFC 6749 password grant).

It is the JSON login behind a form: the same sessions, audit rows, limits and
throttle, answered in RFC 6749's words (section 5.1 on success, 5.2's error codes
inside the service's one error shape on refusal).
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from werkzeug.datastructures import MultiDict

from tests.support import PASSWORD, error_of
from wafaa.schemas.auth import TokenRequestSchema
from wafaa.services.oauth import UnsupportedGrantType

TOKEN = "/api/v1/auth/token"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/tenants/me"


def _grant(client, username: str, password: str = PASSWORD, **extra):
    return client.post(TOKEN, data={"grant_type": "password", "username": username, "password": password, **extra})


def _refused(response, code: str) -> dict:
    assert response.status_code == 400, response.get_json()
    error = error_of(response)
    assert error["code"] == code
    return error


def _login_outcomes() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value("wafaa_logins_total", {"outcome": outcome}) or 0.0
        for outcome in ("success", "failure", "limited")
    }


# --- success ---------------------------------------------------------------------


def test_password_grant_answers_as_rfc_6749_section_5_1_and_the_token_works(client, factory, raw_db):
    world = factory.world()
    before = _login_outcomes()
    # Swagger UI's form: an empty scope, and Basic client credentials of an
    # empty id and secret; neither means anything here.
    response = client.post(
        TOKEN,
        data={"grant_type": "password", "username": world.owner.email, "password": PASSWORD, "scope": ""},
        headers={"Authorization": "Basic Og=="},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == 30 * 60
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert _login_outcomes()["success"] - before["success"] == 1

    me = client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["name"] == world.tenant.name
    refreshed = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {body['refresh_token']}"})
    assert refreshed.status_code == 200
    # The same session and audit row as the JSON login's.
    assert raw_db.execute(
        "SELECT count(*) FROM auth_sessions WHERE admin_id = %s AND revoked_at IS NULL", (world.owner.id,)
    ).fetchone() == (1,)
    assert raw_db.execute(
        "SELECT count(*) FROM audit_logs WHERE action = 'auth.login' AND user_id = %s", (world.owner.id,)
    ).fetchone() == (1,)


def test_the_schema_loads_a_plain_mapping_too():
    # Outside a request (no form MultiDict), nothing can be repeated.
    form = TokenRequestSchema().load({"grant_type": "password", "username": "a@b.example.com", "password": "p"})
    assert form == {"grant_type": "password", "username": "a@b.example.com", "password": "p"}
    with pytest.raises(UnsupportedGrantType):
        TokenRequestSchema().load({"grant_type": "implicit"})


def test_the_username_is_the_email_normalised_as_the_login_does(client, factory):
    world = factory.world()
    assert _grant(client, f"  {world.owner.email.upper()} ").status_code == 200


def test_a_client_id_is_accepted_and_ignored(client, factory):
    world = factory.world()
    assert _grant(client, world.admin.email, client_id="swagger-ui").status_code == 200


# --- refusals ----------------------------------------------------------------------


def test_every_failed_login_is_one_invalid_grant(client, factory, raw_db):
    world = factory.world()
    inactive = factory.admin(world.tenant, "admin", is_active=False)
    before = _login_outcomes()
    answers = [
        _grant(client, world.owner.email, "not the password at all"),
        _grant(client, "nobody@nowhere.example.com"),
        _grant(client, inactive.email),
    ]
    errors = [_refused(answer, "invalid_grant") for answer in answers]
    assert {(e["message"], e["details"]) for e in errors} == {("The email or password is incorrect.", None)}
    assert all("WWW-Authenticate" not in answer.headers for answer in answers)
    # Recorded as the JSON login records it, and counted as failed logins.
    reasons = raw_db.execute(
        "SELECT details ->> 'reason' FROM audit_logs WHERE action = 'auth.login_failed' ORDER BY details ->> 'reason'"
    ).fetchall()
    assert reasons == [("bad_password",), ("inactive",)]
    assert _login_outcomes()["failure"] - before["failure"] == 3


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"grant_type": "password", "password": PASSWORD}, "username"),
        ({"grant_type": "password", "username": "owner@acme.example.com"}, "password"),
        ({"username": "owner@acme.example.com", "password": PASSWORD}, "grant_type"),
        ({"grant_type": "password", "username": "a@b.example.com", "password": PASSWORD, "client_secret": "s"}, None),
        ({"grant_type": "password", "username": "a\x00@b.example.com", "password": PASSWORD}, "username"),
    ],
)
def test_a_malformed_request_is_invalid_request_naming_the_field(client, form, field):
    error = _refused(client.post(TOKEN, data=form), "invalid_request")
    assert list(error["details"]) == ["form"]
    if field is not None:
        assert field in error["details"]["form"]


def test_a_repeated_parameter_is_invalid_request_not_the_first_of_two(client, factory):
    world = factory.world()
    form = [("grant_type", "password"), ("username", world.owner.email), ("password", "wrong"), ("password", PASSWORD)]
    error = _refused(client.post(TOKEN, data=MultiDict(form)), "invalid_request")
    assert error["details"] == {"form": {"password": ["Give this parameter once."]}}


@pytest.mark.parametrize("grant", ["client_credentials", "refresh_token", "authorization_code", ""])
def test_another_grant_type_is_unsupported_whatever_else_is_missing(client, grant):
    error = _refused(client.post(TOKEN, data={"grant_type": grant}), "unsupported_grant_type")
    assert "grant_type=password" in error["message"]


def test_an_empty_request_is_invalid_request(client):
    error = _refused(client.post(TOKEN), "invalid_request")
    assert set(error["details"]["form"]) == {"grant_type", "username", "password"}


# --- only this endpoint takes a form -------------------------------------------------


def test_the_token_endpoint_refuses_json(client, factory):
    world = factory.world()
    response = client.post(TOKEN, json={"grant_type": "password", "username": world.owner.email, "password": PASSWORD})
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "unsupported_media_type"
    assert "application/x-www-form-urlencoded" in error["message"]


@pytest.mark.parametrize(("method", "path"), [("POST", LOGIN), ("PATCH", ME), ("POST", "/api/v1/auth/logout")])
def test_every_other_endpoint_still_refuses_a_form(api, factory, method, path):
    world = factory.world()
    response = api.request(method, path, world.owner, data={"email": world.owner.email, "password": PASSWORD})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_a_multipart_form_is_refused_too(client, factory):
    world = factory.world()
    response = client.post(
        TOKEN,
        data={"grant_type": "password", "username": world.owner.email, "password": PASSWORD},
        content_type="multipart/form-data",
    )
    assert response.status_code == 415


# --- one login, one budget --------------------------------------------------------------


def test_both_doors_spend_the_same_per_account_budget(make_app, factory):
    client = make_app(RATELIMIT_LOGIN_PER_ACCOUNT="2/hour").test_client()
    world = factory.world()
    before = _login_outcomes()
    assert client.post(LOGIN, json={"email": world.owner.email, "password": PASSWORD}).status_code == 200
    assert _grant(client, world.owner.email.upper()).status_code == 200
    for refused in (_grant(client, world.owner.email), client.post(LOGIN, json={"email": world.owner.email})):
        assert refused.status_code == 429
        assert error_of(refused)["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
    assert _grant(client, world.admin.email).status_code == 200  # another account has its own
    assert _login_outcomes()["limited"] - before["limited"] == 2


def test_both_doors_spend_the_same_per_address_budget(make_app, factory):
    client = make_app(RATELIMIT_LOGIN_PER_IP="2/hour").test_client()
    world = factory.world()
    assert _grant(client, world.owner.email).status_code == 200
    assert client.post(LOGIN, json={"email": world.admin.email, "password": PASSWORD}).status_code == 200
    assert _grant(client, world.viewer.email).status_code == 429


def test_failures_through_the_token_endpoint_throttle_the_json_login(make_app, factory, raw_db):
    client = make_app(LOGIN_LOCKOUT_THRESHOLD="2", LOGIN_THROTTLE_BASE_SECONDS="60").test_client()
    world = factory.world()
    for _ in range(2):
        _refused(_grant(client, world.owner.email, "not the password!"), "invalid_grant")
    # The right password, through either door, from the throttled source.
    assert client.post(LOGIN, json={"email": world.owner.email, "password": PASSWORD}).status_code == 401
    _refused(_grant(client, world.owner.email), "invalid_grant")
    actions = raw_db.execute(
        "SELECT action FROM audit_logs WHERE resource_id = %s ORDER BY created_at", (str(world.owner.id),)
    ).fetchall()
    assert ("auth.login_throttled",) in actions


def test_a_form_over_the_size_limit_is_413(client, app):
    padding = "x" * app.config["MAX_CONTENT_LENGTH"]
    response = client.post(TOKEN, data={"grant_type": "password", "username": "a@b.example.com", "password": padding})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
