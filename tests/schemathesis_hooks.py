"""Schemathesis hooks for `st run` against a served app (tests/test_schemathesis_run.py).

Every call gets tokens of its own, from a login made just before it: the run
calls logout and revokes sessions (the stateful phase with real session ids),
and a token shared across calls would die with the first of them, turning the
rest of the run into 401s. Logins are cheap in the testing configuration
(bcrypt cost 4, no login limits to speak of). The refresh operation gets the
refresh token, as its documented scheme says; everything else the access token.
"""

from __future__ import annotations

import os
import uuid

import requests
import schemathesis
from hypothesis import strategies as st

from wafaa.passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_LENGTH
from wafaa.schemas.tenant import settings_problem

REFRESH_OPERATION = "POST /api/v1/auth/refresh"
SETTINGS_OPERATION = "PATCH /api/v1/tenants/me"

# A new password is MIN_PASSWORD_LENGTH characters to MAX_PASSWORD_BYTES bytes in
# UTF-8, without NUL, as the document's description of `format: password` says.
# JSON Schema can count characters but not bytes, so the fuzzer is told how to
# make such passwords: short ones of any characters (4 bytes at most each) or
# long ones of ASCII. (Too short or of the wrong type stays negative data.)
_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
schemathesis.openapi.format(
    "password",
    st.one_of(
        st.text(_CHARACTERS, min_size=MIN_PASSWORD_LENGTH, max_size=MAX_PASSWORD_BYTES // 4),
        st.text(
            st.characters(min_codepoint=1, max_codepoint=127), min_size=MIN_PASSWORD_LENGTH, max_size=MAX_PASSWORD_BYTES
        ),
    ),
)


@schemathesis.auth(refresh_interval=None)
class FreshLogin:
    def get(self, case, context):
        response = requests.post(
            f"{os.environ['WAFAA_ST_URL']}/api/v1/auth/login",
            json={"email": os.environ["WAFAA_ST_EMAIL"], "password": os.environ["WAFAA_ST_PASSWORD"]},
            # The run's own logins come from another address (the server trusts one
            # proxy) than the fuzzer's requests: the fuzzer learns the run's email
            # from answers and tries wrong passwords with it, and the lockout it
            # earns (per account and source) is its own, as an attacker's would be.
            headers={"X-Forwarded-For": "192.0.2.10"},
            timeout=10,
        )
        assert response.status_code == 200, f"login for the run failed: {response.status_code} {response.text}"
        return response.json()

    def set(self, case, data, context):
        token = data["refresh_token"] if case.operation.label == REFRESH_OPERATION else data["access_token"]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@schemathesis.hook
def before_call(context, case, kwargs):
    _keep_own_account(case)
    _keep_settings_storable(case)


def _keep_own_account(case) -> None:
    """The run never changes the account it runs as. Having created a second
    owner, it may legitimately deactivate or demote its own (it learns the id
    from the admin list), after which every login of the run fails and the rest
    is 401s. Such a call goes to an id that does not exist instead (404, a
    documented answer): every other admin, the second owner included, stays fair game."""
    if (
        case.method in ("PATCH", "POST")
        and str((case.path_parameters or {}).get("admin_id")) == os.environ["WAFAA_ST_ADMIN_ID"]
    ):
        case.path_parameters = {**case.path_parameters, "admin_id": str(uuid.uuid4())}


def _without_nul(value):
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _keep_settings_storable(case) -> None:
    """`settings` is free-form JSON, and its limits are in the document's prose:
    no NUL in any key or string (PostgreSQL's jsonb cannot store one), at most
    16 KiB and 8 levels. OpenAPI 3.0 cannot put them in the schema (it has no
    `propertyNames`, and no size in bytes), so a generated object is made to
    keep them before it is sent: NULs removed, and an object still over the
    limits sent as {}. The limits themselves are tested in test_tenant_api.py."""
    body = case.body
    if case.operation.label == SETTINGS_OPERATION and isinstance(body, dict) and isinstance(body.get("settings"), dict):
        settings = _without_nul(body["settings"])
        case.body = {**body, "settings": {} if settings_problem(settings) else settings}
