"""Every error, from any layer, has the one JSON shape.

`error_of` (tests/support.py) checks the envelope itself: Content-Type
application/json, exactly {"error": {status, code, message, details, request_id}},
status equal to the HTTP status and request_id equal to the X-Request-ID header.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from config import TestConfig
from tests.servers import GunicornServer
from tests.support import error_of
from wafaa import create_app
from wafaa.errors import ServiceUnavailable
from wafaa.security import PUBLIC, requires

LOGIN = "/api/v1/auth/login"
ONE_MIB = 1024 * 1024


@contextmanager
def gunicorn_server(**kwargs) -> Iterator[GunicornServer]:
    """tests/servers.py's GunicornServer, started with retries and always stopped.

    GunicornServer.start() polls /health with a 1 s read timeout and only retries on
    ConnectionError: when a worker takes more than a second to boot (a loaded
    machine) the ReadTimeout escapes and the process is left running. Here every
    attempt's process is stopped by PID, whatever happens.
    """
    server = GunicornServer(**kwargs)
    try:
        for attempt in range(3):
            try:
                server.start(timeout=30)
                break
            except requests.Timeout:
                server.stop()
                if attempt == 2:
                    raise
        yield server
    finally:
        server.stop()
        server.log.close()
        Path(server.log.name).unlink(missing_ok=True)


def oversized_login_body(limit: int = ONE_MIB) -> bytes:
    """A syntactically valid JSON login body just over `limit` bytes."""
    body = b'{"email": "owner@acme.example.com", "password": "' + b"p" * limit + b'"}'
    assert len(body) > limit
    return body


# --- routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/api/v1/nope", "/api/v2/auth/login", "/api/v1/tenants/me/admins/not-a-uuid"]
)
def test_unknown_route_is_404_in_the_error_shape(client, path):
    response = client.get(path)
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert error["details"] is None


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", LOGIN, {"POST"}),
        ("DELETE", LOGIN, {"POST"}),
        ("PUT", "/api/v1/tenants/me", {"GET", "PATCH"}),
        ("POST", "/health", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_an_allow_header(client, method, path, allowed):
    response = client.open(path, method=method)
    assert response.status_code == 405
    error = error_of(response)
    assert error["code"] == "method_not_allowed"
    allow = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed <= allow
    assert method not in allow


# --- request bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("body", ['{"email":', "{'email': 'x'}", "not json at all", '{"email": "a@b.c",}'])
def test_malformed_json_body_is_400(client, body):
    response = client.post(LOGIN, data=body, content_type="application/json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_request"


def test_json_body_that_is_not_an_object_is_422_not_500(client):
    response = client.post(LOGIN, json=["owner@acme.example.com", "password"])
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


def test_body_over_max_content_length_with_content_length_is_413(client):
    response = client.post(LOGIN, data=oversized_login_body(), content_type="application/json")
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large"
    assert str(ONE_MIB) in error["message"]


def test_body_at_max_content_length_is_not_413(client):
    # Exactly at the limit is allowed: the login is merely refused.
    prefix, suffix = b'{"email": "nobody@acme.example.com", "password": "', b'"}'
    body = prefix + b"p" * (ONE_MIB - len(prefix) - len(suffix)) + suffix
    assert len(body) == ONE_MIB
    response = client.post(LOGIN, data=body, content_type="application/json")
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_credentials"


def test_chunked_body_over_max_content_length_is_413(client):
    # No Content-Length; the server (like gunicorn, which sets wsgi.input_terminated)
    # de-chunks the stream and Werkzeug must stop reading at MAX_CONTENT_LENGTH.
    response = client.post(
        LOGIN,
        input_stream=io.BytesIO(oversized_login_body()),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413, response.get_json()
    assert error_of(response)["code"] == "payload_too_large"


def test_small_chunked_json_body_is_accepted(client):
    body = b'{"email": "nobody@acme.example.com", "password": "wrong-password-123"}'
    response = client.post(
        LOGIN,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_credentials"


@pytest.mark.gunicorn
def test_chunked_body_over_max_content_length_is_413_under_gunicorn(migrated):
    """The same through a real server and a real chunked upload."""
    body = oversized_login_body()

    def chunks():
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    with gunicorn_server(workers=1, threads=2) as server:
        response = requests.post(
            server.url + LOGIN, data=chunks(), headers={"Content-Type": "application/json"}, timeout=10
        )
        with_length = requests.post(
            server.url + LOGIN, data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert with_length.status_code == 413
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"


def test_max_content_length_is_configurable(monkeypatch, migrated):
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "2048")
    app = create_app(TestConfig)
    response = app.test_client().post(LOGIN, data=oversized_login_body(2048), content_type="application/json")
    assert response.status_code == 413
    assert "2048" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("email=a%40b.c&password=secret-password", "application/x-www-form-urlencoded"),
        ('{"email": "a@b.c", "password": "secret-password"}', "text/plain"),
        ("<login/>", "application/xml"),
    ],
)
def test_non_json_body_on_a_json_endpoint_is_415(client, data, content_type):
    response = client.post(LOGIN, data=data, content_type=content_type)
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_body_without_content_type_is_415(client):
    response = client.post(LOGIN, data=b'{"email": "a@b.c", "password": "secret-password"}')
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


# --- validation ------------------------------------------------------------------------------


def test_validation_error_is_422_with_per_field_details(client):
    response = client.post(LOGIN, json={"email": "owner@acme.example.com"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert set(error["details"]) == {"json"}
    assert set(error["details"]["json"]) == {"password"}
    assert error["details"]["json"]["password"]


def test_every_invalid_field_is_reported(client):
    response = client.post(LOGIN, json={"email": 42, "is_admin": True})
    assert response.status_code == 422
    fields = error_of(response)["details"]["json"]
    assert set(fields) == {"email", "password", "is_admin"}  # wrong type, missing, unknown


def test_query_validation_errors_are_keyed_by_location(api, factory):
    world = factory.world()
    response = api.get("/api/v1/tenants/me/admins?page=0&page_size=1000", world.owner)
    assert response.status_code == 422
    details = error_of(response)["details"]
    assert set(details) == {"query"}
    assert set(details["query"]) == {"page", "page_size"}


# --- authentication errors share the shape ----------------------------------------------------


def test_missing_token_is_401_in_the_error_shape(client):
    response = client.get("/api/v1/tenants/me")
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_missing"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_garbage_token_is_401_token_invalid(client):
    response = client.get("/api/v1/tenants/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


def test_wrong_credentials_are_401_invalid_credentials(client):
    response = client.post(LOGIN, json={"email": "nobody@acme.example.com", "password": "wrong-password-123"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_credentials"


# --- unexpected exceptions and an unreachable database -----------------------------------------


@pytest.fixture
def exploding_app(migrated):
    """A separate app, not in testing mode, with a public route that raises."""
    app = create_app(TestConfig)
    app.config["TESTING"] = False

    def explode():
        raise RuntimeError("secret internals: password=hunter2 at /srv/wafaa/db.py")

    app.add_url_rule("/__explode", "explode", requires(PUBLIC)(explode))
    return app


def test_unexpected_exception_is_500_without_internals(exploding_app):
    response = exploding_app.test_client().get("/__explode")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert error["details"] is None
    text = response.get_data(as_text=True)
    for leak in ("secret internals", "hunter2", "RuntimeError", "Traceback", "db.py", "/srv/"):
        assert leak not in text


def test_database_unreachable_on_an_api_call_is_503(monkeypatch, migrated):
    # Nothing listens on port 1: the connection is refused at once.
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/wafaa_test")
    app = create_app(TestConfig)
    response = app.test_client().post(LOGIN, json={"email": "owner@acme.example.com", "password": "a-long-password"})
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "service_unavailable"
    assert "Retry-After" in response.headers
    text = response.get_data(as_text=True)
    for leak in ("127.0.0.1", "psycopg", "OperationalError", "connection"):
        assert leak not in text


def test_database_unreachable_503_keeps_the_apps_retry_after(monkeypatch, migrated):
    # The app answers an outage with its own, short Retry-After (ServiceUnavailable);
    # the rate limiter's header injection must not replace it with its window reset.
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/wafaa_test")
    app = create_app(TestConfig)
    response = app.test_client().post(LOGIN, json={"email": "owner@acme.example.com", "password": "a-long-password"})
    assert response.status_code == 503
    assert response.headers.getlist("Retry-After") == [ServiceUnavailable.headers["Retry-After"]]


def test_database_unreachable_on_an_authenticated_call_is_503_not_401(monkeypatch, api, factory):
    # A valid token whose session cannot be checked must not read as "revoked".
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/wafaa_test")
    app = create_app(TestConfig)
    response = app.test_client().get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert error_of(response)["code"] == "service_unavailable"


# --- X-Request-ID ------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["req-12345678", "a1b2c3d4", str(uuid.uuid4()), "trace:abc.def_1-2", "x" * 128])
def test_well_formed_request_id_is_echoed_in_header_and_error_body(client, request_id):
    response = client.get("/nope", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    assert error_of(response)["request_id"] == request_id


def test_well_formed_request_id_is_echoed_on_success_too(client):
    response = client.get("/api/v1/system/info", headers={"X-Request-ID": "client-req-0001"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "client-req-0001"


@pytest.mark.parametrize(
    "request_id",
    [
        "has spaces in it",
        "x" * 129,  # too long
        "short",  # too short
        "-leading-dash",
        "id-with-<script>",
        "line\tbreak-0001",
        "ünïcode-0001",
        "",
    ],
)
def test_malformed_request_id_is_replaced(client, request_id):
    response = client.get("/nope", headers={"X-Request-ID": request_id})
    replacement = response.headers["X-Request-ID"]
    assert replacement != request_id
    assert len(replacement) >= 8
    assert replacement.isalnum()
    assert error_of(response)["request_id"] == replacement


def test_every_request_gets_its_own_request_id(client):
    ids = {client.get("/nope").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.gunicorn
def test_a_long_url_or_large_headers_get_the_error_format_from_the_real_server():
    """gunicorn's own 414 and 431 are bare HTML without a request id; the app's
    limits sit below them, so the app answers in the error format."""
    with GunicornServer(workers=1, threads=2) as server:
        answers = {
            414: requests.get(f"{server.url}/api/v1/system/info?q={'x' * 5000}", timeout=10),
            431: requests.get(f"{server.url}/api/v1/system/info", headers={"X-Big": "y" * 9000}, timeout=10),
        }
        many = {f"X-Field-{n}": "1" for n in range(120)}
        answers[4310] = requests.get(f"{server.url}/api/v1/system/info", headers=many, timeout=10)
        fine = requests.get(
            f"{server.url}/api/v1/system/info?q={'x' * 3000}", headers={"X-Big": "y" * 7000}, timeout=10
        )
    for expected, response in answers.items():
        assert response.status_code == (431 if expected == 4310 else expected), response.text[:200]
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["X-Request-ID"]
        assert response.json()["error"]["code"] in {"uri_too_long", "request_header_fields_too_large"}
    assert fine.status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/token", {"data": "grant_type=password", "content_type": "application/x-www-form-urlencoded"}),
        ("/api/v1/tenants/me", {"data": "not json", "content_type": "text/plain"}),
        ("/api/v1/no-such-thing", {"data": "<xml/>", "content_type": "application/xml"}),
    ],
)
def test_a_body_sent_where_no_route_takes_it_gets_the_routes_answer_not_415(client, path, body):
    response = client.put(path, **body)
    expected = 404 if "no-such-thing" in path else 405
    assert (response.status_code, error_of(response)["code"]) == (
        expected,
        "not_found" if expected == 404 else "method_not_allowed",
    )
