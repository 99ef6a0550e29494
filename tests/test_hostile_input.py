"""Input built to break parsers and encoders gets a 4xx in the one error shape,
never a 500: JSON nested a thousand levels deep, and lone UTF-16 surrogates
("\\ud800"), which are valid JSON but cannot be encoded as UTF-8 or stored."""

from __future__ import annotations

import pytest

from tests.support import error_of

DEEP = 5000


def _deep_body(key: str | None = None) -> bytes:
    nested = b"[" * DEEP + b"]" * DEEP
    return nested if key is None else b'{"' + key.encode() + b'": ' + nested + b"}"


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("POST", "/api/v1/auth/login", None),
        ("POST", "/api/v1/auth/login", "email"),
        ("POST", "/api/v1/auth/refresh", "refresh_token"),
        ("PATCH", "/api/v1/tenants/me", "settings"),
        ("POST", "/api/v1/tenants/me/admins", "full_name"),
    ],
)
def test_json_nested_thousands_of_levels_deep_is_400(api, factory, method, path, key):
    token = api.login(factory.world().owner)["access_token"]
    response = api.request(
        method, path, token=token, data=_deep_body(key), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


def test_settings_nested_beyond_the_body_limit_but_parseable_are_refused(api, factory):
    token = api.login(factory.world().owner)["access_token"]
    settings = "1"
    for _ in range(200):
        settings = '{"a": ' + settings + "}"
    response = api.request(
        "PATCH",
        "/api/v1/tenants/me",
        token=token,
        data='{"settings": ' + settings + "}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


LONE_SURROGATE = '"\\ud800x"'  # JSON text: a high surrogate with no low one


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", '{"email": ' + LONE_SURROGATE + ', "password": "a long enough password"}'),
        ("/api/v1/auth/login", '{"email": "someone@example.com", "password": ' + LONE_SURROGATE + "}"),
    ],
)
def test_lone_surrogates_at_login_are_422_and_hash_nothing(api, path, body):
    response = api.post(path, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/v1/tenants/me", '{"name": ' + LONE_SURROGATE + "}"),
        ("PATCH", "/api/v1/tenants/me", '{"settings": {"k": ' + LONE_SURROGATE + "}}"),
        ("PATCH", "/api/v1/tenants/me", '{"settings": {' + LONE_SURROGATE + ": 1}}"),
        (
            "POST",
            "/api/v1/tenants/me/admins",
            '{"email": "new@a.test", "full_name": "N", "role": "viewer", "password": ' + LONE_SURROGATE + "}",
        ),
        (
            "POST",
            "/api/v1/tenants/me/admins",
            '{"email": ' + LONE_SURROGATE + ', "full_name": "N", "role": "viewer", "password": "long enough pw"}',
        ),
    ],
)
def test_lone_surrogates_in_stored_fields_are_422_and_nothing_changes(api, factory, raw_db, method, path, body):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    before = raw_db.execute("SELECT name, settings FROM tenants WHERE id = %s", (world.tenant.id,)).fetchone()
    admins = raw_db.execute("SELECT count(*) FROM tenant_admins").fetchone()
    response = api.request(method, path, token=token, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"
    assert raw_db.execute("SELECT name, settings FROM tenants WHERE id = %s", (world.tenant.id,)).fetchone() == before
    assert raw_db.execute("SELECT count(*) FROM tenant_admins").fetchone() == admins
