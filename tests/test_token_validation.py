"""Every way a bearer token can be wrong, on an access endpoint (GET /api/v1/tenants/me)
and on the refresh endpoint: always 401 with `WWW-Authenticate: Bearer...` and a
specific code, never 422, never 5xx, never any data.

Forged tokens are built with PyJWT and the app's real secret from the claims of a
real, live session, so that each case differs from a valid token in exactly one
way; a control case re-encodes the same claims unchanged and must succeed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from tests.support import PASSWORD, AdminRef, error_of

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/tenants/me"
ALGORITHM = "HS256"


@dataclass
class Ctx:
    secret: str
    admin: AdminRef
    colleague: AdminRef
    other_tenant_admin: AdminRef
    tokens: dict
    access: dict  # claims of the access token
    refresh: dict  # claims of the refresh token
    colleague_sid: str
    tenant_name: str

    def sign(self, claims: dict, *, key: str | None = None, algorithm: str = ALGORITHM) -> str:
        with warnings.catch_warnings():
            # PyJWT warns that the test secret is short for HS384/HS512; such
            # tokens are made here only to be refused.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, key or self.secret, algorithm=algorithm)


def _login(client, admin: AdminRef) -> dict:
    response = client.post(LOGIN, json={"email": admin.email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def ctx(app, client, factory) -> Ctx:
    tenant = factory.tenant(name="Secret Tenant Name")
    admin = factory.admin(tenant, "owner")
    colleague = factory.admin(tenant, "admin")
    other_tenant_admin = factory.admin(factory.tenant(name="Other Tenant Name"))
    secret = app.config["JWT_SECRET_KEY"]
    tokens = _login(client, admin)
    colleague_tokens = _login(client, colleague)
    _login(client, other_tenant_admin)

    def claims(token: str) -> dict:
        return jwt.decode(token, secret, algorithms=[ALGORITHM])

    return Ctx(
        secret=secret,
        admin=admin,
        colleague=colleague,
        other_tenant_admin=other_tenant_admin,
        tokens=tokens,
        access=claims(tokens["access_token"]),
        refresh=claims(tokens["refresh_token"]),
        colleague_sid=claims(colleague_tokens["access_token"])["sid"],
        tenant_name=tenant.name,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict, alg: str) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _without(claims: dict, name: str) -> dict:
    return {k: v for k, v in claims.items() if k != name}


def _tampered(ctx: Ctx, claims: dict) -> str:
    # A valid token's signature on a changed payload.
    header, _, signature = ctx.sign(claims).split(".")
    payload = _b64(json.dumps({**claims, "exp": claims["exp"] + 60}).encode())
    return f"{header}.{payload}.{signature}"


def assert_refused(response, code: str, ctx: Ctx | None = None) -> None:
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True))
    error = error_of(response)  # the error envelope and nothing else
    assert error["code"] == code, error
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if ctx is not None:
        text = response.get_data(as_text=True)
        assert ctx.tenant_name not in text
        assert str(ctx.admin.tenant_id) not in text
        assert ctx.admin.email not in text


# --- the Authorization header itself ----------------------------------------------

HEADER_CASES = [
    pytest.param(None, "token_missing", id="no-header"),
    pytest.param("", "token_missing", id="empty-header"),
    pytest.param("Basic abc", "token_missing", id="basic-scheme"),
    pytest.param("Token abc.def.ghi", "token_missing", id="other-scheme"),
    pytest.param("Bearer", "token_invalid", id="bearer-without-token"),
    pytest.param("Bearer ", "token_invalid", id="bearer-and-space"),
    pytest.param("Bearer a b", "token_invalid", id="bearer-two-parts"),
    pytest.param("Bearer not-a-jwt", "token_invalid", id="bearer-garbage"),
    pytest.param("Bearer a.b.c", "token_invalid", id="bearer-three-garbage-parts"),
]


@pytest.mark.parametrize("header, code", HEADER_CASES)
def test_bad_authorization_header_on_an_access_endpoint(client, ctx, header, code):
    headers = {} if header is None else {"Authorization": header}
    assert_refused(client.get(ME, headers=headers), code, ctx)


@pytest.mark.parametrize("header, code", HEADER_CASES)
def test_bad_authorization_header_on_the_refresh_endpoint(client, ctx, header, code):
    headers = {} if header is None else {"Authorization": header}
    assert_refused(client.post(REFRESH, headers=headers), code, ctx)


# --- forged and damaged tokens ------------------------------------------------------

# Each case turns the claims of a live token into a token string.
Forge = Callable[[Ctx, dict], str]
NOW = int(time.time())

FORGED_CASES: list = [
    pytest.param(lambda c, cl: _tampered(c, cl), "token_invalid", id="bad-signature"),
    pytest.param(lambda c, cl: c.sign(cl)[:-8], "token_invalid", id="truncated-signature"),
    pytest.param(lambda c, cl: c.sign(cl).rsplit(".", 1)[0] + ".", "token_invalid", id="empty-signature"),
    pytest.param(lambda c, cl: c.sign(cl, key="another-key-" + "x" * 40), "token_invalid", id="other-key"),
    pytest.param(lambda c, cl: c.sign(cl, algorithm="HS384"), "token_invalid", id="hs384"),
    pytest.param(lambda c, cl: c.sign(cl, algorithm="HS512"), "token_invalid", id="hs512"),
    *[
        pytest.param(lambda c, cl, alg=alg: _unsigned(cl, alg), "token_invalid", id=f"alg-{alg}")
        for alg in ("none", "None", "NONE", "nOnE")
    ],
    pytest.param(lambda c, cl: c.sign({**cl, "iat": NOW - 7200, "exp": NOW - 60}), "token_expired", id="expired"),
    pytest.param(lambda c, cl: c.sign({**cl, "nbf": NOW + 3600}), "token_invalid", id="nbf-in-future"),
    *[
        pytest.param(lambda c, cl, name=name: c.sign(_without(cl, name)), "token_invalid", id=f"missing-{name}")
        for name in ("exp", "jti", "type", "sid", "tid", "sub", "iat")
    ],
    *[
        pytest.param(lambda c, cl, name=name: c.sign({**cl, name: "not-a-uuid"}), "token_invalid", id=f"bad-{name}")
        for name in ("sid", "tid", "sub")
    ],
    pytest.param(lambda c, cl: c.sign({**cl, "type": "admin"}), "token_invalid", id="unknown-type"),
    pytest.param(lambda c, cl: c.sign({**cl, "exp": "tomorrow"}), "token_invalid", id="exp-not-a-number"),
    pytest.param(lambda c, cl: c.sign({**cl, "jti": ""}), "token_invalid", id="empty-jti"),
    # Well signed, but naming another tenant, another admin or another session.
    pytest.param(
        lambda c, cl: c.sign({**cl, "tid": str(c.other_tenant_admin.tenant_id)}), "token_revoked", id="other-tenant"
    ),
    pytest.param(lambda c, cl: c.sign({**cl, "sub": str(c.colleague.id)}), "token_revoked", id="other-admin"),
    pytest.param(lambda c, cl: c.sign({**cl, "sid": c.colleague_sid}), "token_revoked", id="colleagues-session"),
    pytest.param(lambda c, cl: c.sign({**cl, "sid": str(uuid.uuid4())}), "token_revoked", id="unknown-session"),
]


def test_reencoded_claims_are_accepted_so_the_forgeries_below_differ_only_where_stated(client, ctx):
    assert client.get(ME, headers={"Authorization": f"Bearer {ctx.sign(ctx.access)}"}).status_code == 200
    response = client.post(REFRESH, headers={"Authorization": f"Bearer {ctx.sign(ctx.refresh)}"})
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("forge, code", FORGED_CASES)
def test_forged_access_token(client, ctx, forge: Forge, code):
    token = forge(ctx, dict(ctx.access))
    assert_refused(client.get(ME, headers={"Authorization": f"Bearer {token}"}), code, ctx)
    # The real token was not affected by the attempt.
    assert client.get(ME, headers={"Authorization": f"Bearer {ctx.tokens['access_token']}"}).status_code == 200


@pytest.mark.parametrize("forge, code", FORGED_CASES)
def test_forged_refresh_token(client, ctx, forge: Forge, code):
    token = forge(ctx, dict(ctx.refresh))
    assert_refused(client.post(REFRESH, headers={"Authorization": f"Bearer {token}"}), code, ctx)
    assert_refused(client.post(REFRESH, json={"refresh_token": token}), code, ctx)


def test_other_tenant_forgery_returns_no_data_of_either_tenant(client, ctx):
    other_tid = str(ctx.other_tenant_admin.tenant_id)
    token = ctx.sign({**ctx.access, "tid": other_tid})
    response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert_refused(response, "token_revoked", ctx)
    text = response.get_data(as_text=True)
    assert other_tid not in text and "Other Tenant Name" not in text
    response = client.get(f"{ME}/admins", headers={"Authorization": f"Bearer {token}"})
    assert_refused(response, "token_revoked", ctx)
    assert ctx.other_tenant_admin.email not in response.get_data(as_text=True)


def test_token_types_cannot_be_swapped(client, ctx):
    assert_refused(client.get(ME, headers={"Authorization": f"Bearer {ctx.tokens['refresh_token']}"}), "token_invalid")
    assert_refused(
        client.post(REFRESH, headers={"Authorization": f"Bearer {ctx.tokens['access_token']}"}), "token_invalid"
    )
    assert_refused(client.post(REFRESH, json={"refresh_token": ctx.tokens["access_token"]}), "token_invalid")


# --- tokens whose session, admin or tenant is no longer live -------------------------

STATE_CASES = [
    pytest.param("UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'test' WHERE id = %s", id="revoked"),
    pytest.param("DELETE FROM auth_sessions WHERE id = %s", id="session-row-deleted"),
    pytest.param("UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = %s", id="expired"),
    pytest.param(
        "UPDATE tenant_admins SET is_active = false WHERE id = (SELECT admin_id FROM auth_sessions WHERE id = %s)",
        id="admin-inactive",
    ),
    pytest.param(
        "UPDATE tenants SET is_active = false WHERE id = (SELECT tenant_id FROM auth_sessions WHERE id = %s)",
        id="tenant-inactive",
    ),
]


@pytest.mark.parametrize("statement", STATE_CASES)
def test_token_of_a_dead_session_admin_or_tenant_is_revoked(client, ctx, raw_db, statement):
    assert client.get(ME, headers={"Authorization": f"Bearer {ctx.tokens['access_token']}"}).status_code == 200
    assert raw_db.execute(statement, (ctx.access["sid"],)).rowcount == 1
    assert_refused(
        client.get(ME, headers={"Authorization": f"Bearer {ctx.tokens['access_token']}"}), "token_revoked", ctx
    )
    assert_refused(
        client.post(REFRESH, headers={"Authorization": f"Bearer {ctx.tokens['refresh_token']}"}), "token_revoked", ctx
    )
    assert_refused(client.post(REFRESH, json={"refresh_token": ctx.tokens["refresh_token"]}), "token_revoked", ctx)


# --- tokens in places they are not read from --------------------------------------


@pytest.mark.parametrize("param", ["jwt", "access_token", "token", "refresh_token", "authorization"])
def test_token_in_the_query_string_is_ignored(client, ctx, param):
    response = client.get(f"{ME}?{param}={ctx.tokens['access_token']}")
    assert_refused(response, "token_missing", ctx)
    response = client.post(f"{REFRESH}?{param}={ctx.tokens['refresh_token']}")
    assert_refused(response, "token_missing", ctx)


def test_access_token_in_a_json_body_is_ignored_on_access_endpoints(client, ctx):
    response = client.patch(ME, json={"access_token": ctx.tokens["access_token"], "name": "x"})
    assert_refused(response, "token_missing", ctx)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty-object"),
        pytest.param({"refresh_token": ""}, id="empty-token"),
        pytest.param({"refresh_token": None}, id="null-token"),
        pytest.param({"other": "value"}, id="other-key"),
        pytest.param([], id="empty-array"),
        pytest.param(["a.b.c"], id="array"),
        pytest.param("a.b.c", id="json-string"),
        pytest.param(12, id="json-number"),
        pytest.param(True, id="json-true"),
    ],
)
def test_refresh_body_without_a_usable_token_is_401_never_a_server_error(client, ctx, body):
    response = client.post(REFRESH, json=body)
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True))
    assert error_of(response)["code"] in ("token_missing", "token_invalid")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "value",
    [pytest.param(12345, id="number"), pytest.param({"a": 1}, id="object"), pytest.param(["x"], id="list")],
)
def test_refresh_token_of_the_wrong_json_type_is_token_invalid(client, ctx, value):
    response = client.post(REFRESH, json={"refresh_token": value})
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True))
    assert error_of(response)["code"] == "token_invalid"
