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


def test_a_json_number_python_refuses_is_400_not_500(api):
    body = '{"email": "a@b.c", "password": ' + "9" * 5000 + "}"
    response = api.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


def test_a_refresh_token_that_is_not_even_text_is_401_token_invalid(api):
    response = api.post(
        "/api/v1/auth/refresh", data='{"refresh_token": "\\ud800"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


@pytest.mark.gunicorn
@pytest.mark.parametrize("encoding", ["chunked", "identity, chunked", "gzip, chunked"])
def test_every_chunked_upload_gets_the_body_checks_under_gunicorn(migrated, encoding):
    """The 415, 413 and depth checks cannot be skipped by spelling Transfer-Encoding
    differently; sent through a real socket, as a client would."""
    import socket

    from tests.servers import GunicornServer

    def send(content_type: str, body: bytes) -> int:
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i : i + 65536] for i in range(0, len(body), 65536))
        )
        request = (
            (
                f"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Transfer-Encoding: {encoding}\r\nConnection: close\r\n\r\n"
            ).encode()
            + chunks
            + b"0\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        return int(reply.split(b" ", 2)[1])

    with GunicornServer(workers=1, threads=2) as server:
        assert send("text/plain", b"email=x") == 415
        assert send("application/json", b"[" * DEEP + b"]" * DEEP) == 400
        assert send("application/json", b'{"email": "' + b"a" * (2 * 1024 * 1024) + b'"}') == 413
