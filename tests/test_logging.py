"""Logs are JSON lines on stdout, tied to their request, with nothing secret in them.

The app's log handler writes to whatever sys.stdout is at the time, so capsys sees
exactly what a container's log collector would.
"""

from __future__ import annotations

import json

import pytest

from config import TestConfig
from wafaa import create_app
from wafaa.security import PUBLIC, requires

LOGIN = "/api/v1/auth/login"


def log_lines(capsys) -> list[dict]:
    """Every line written to stdout since the last call, each parsed as JSON."""
    out = capsys.readouterr().out
    lines = []
    for raw in out.splitlines():
        if not raw.strip():
            continue
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            pytest.fail(f"log line is not JSON: {raw!r}")
    return lines


def raw_output(capsys) -> str:
    return capsys.readouterr().out


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line.get("logger") == "wafaa.access"]


@pytest.fixture
def world(factory):
    return factory.world()


def test_every_line_is_json_and_every_line_of_a_request_carries_its_request_id(client, api, world, capsys):
    capsys.readouterr()  # discard what fixtures wrote
    responses = [
        client.get("/nope"),
        client.post(LOGIN, json={"email": world.owner.email, "password": "wrong-password-123"}),
        client.post(LOGIN, json={"email": world.owner.email}),
        client.post(LOGIN, data="email=x", content_type="application/x-www-form-urlencoded"),
        api.get("/api/v1/tenants/me", world.owner),  # a login, then the call
        client.get("/health"),
    ]
    lines = log_lines(capsys)
    assert lines, "requests produced no log lines"
    issued = {r.headers["X-Request-ID"] for r in responses}
    for line in lines:
        assert {"timestamp", "level", "severity", "logger", "message"} <= set(line), line
        assert line["severity"] == line["level"]
        assert line.get("request_id"), line
    # Every line belongs to one of the requests made (the api helper's login adds one).
    assert issued <= {line["request_id"] for line in lines}
    assert len({line["request_id"] for line in lines}) == len(responses) + 1


def test_exactly_one_access_line_per_request_with_method_path_status_and_duration(client, capsys):
    capsys.readouterr()
    calls = [
        ("GET", "/api/v1/system/info", "req-access-0001", 200),
        ("GET", "/nope", "req-access-0002", 404),
        ("DELETE", LOGIN, "req-access-0003", 405),
        ("POST", LOGIN, "req-access-0004", 422),
        ("GET", "/health", "req-access-0005", 200),
    ]
    for method, path, request_id, expected in calls:
        kwargs = {"json": {}} if method == "POST" else {}
        response = client.open(path, method=method, headers={"X-Request-ID": request_id}, **kwargs)
        assert response.status_code == expected

    access = access_lines(log_lines(capsys))
    assert len(access) == len(calls)
    for method, path, request_id, expected in calls:
        matching = [line for line in access if line["request_id"] == request_id]
        assert len(matching) == 1, (request_id, access)
        line = matching[0]
        assert line["method"] == method
        assert line["path"] == path
        assert line["status"] == expected
        assert isinstance(line["duration_ms"], int | float)
        assert line["duration_ms"] >= 0
        assert line["level"] == "INFO"


def test_authenticated_access_line_names_the_tenant_and_the_user(api, world, capsys):
    headers = api.headers(world.admin)
    capsys.readouterr()
    response = api.client.get("/api/v1/tenants/me", headers=headers)
    assert response.status_code == 200
    (line,) = access_lines(log_lines(capsys))
    assert line["tenant_id"] == str(world.tenant.id)
    assert line["user_id"] == str(world.admin.id)
    assert line["status"] == 200


def test_anonymous_access_line_names_no_tenant_or_user(api, world, capsys):
    # Right after an authenticated request: nothing carries over to the next one.
    assert api.get("/api/v1/tenants/me", world.owner).status_code == 200
    capsys.readouterr()
    assert api.client.get("/api/v1/system/info").status_code == 200
    (line,) = access_lines(log_lines(capsys))
    assert "tenant_id" not in line
    assert "user_id" not in line


def test_refused_token_access_line_has_no_user(api, world, capsys):
    capsys.readouterr()
    response = api.client.get("/api/v1/tenants/me", headers={"Authorization": "Bearer not.a.token"})
    assert response.status_code == 401
    (line,) = access_lines(log_lines(capsys))
    assert line["status"] == 401
    assert "user_id" not in line


def test_query_string_is_not_logged(api, world, capsys):
    headers = api.headers(world.owner)
    capsys.readouterr()
    accepted = api.client.get("/api/v1/tenants/me/admins?page=1&page_size=17&role=viewer", headers=headers)
    assert accepted.status_code == 200
    # A refused query (unknown parameter) is not logged with its values either.
    refused = api.client.get("/api/v1/tenants/me/admins?token=query-secret-4711", headers=headers)
    assert refused.status_code == 422
    out = raw_output(capsys)
    for fragment in ("?", "page_size", "role=viewer", "query-secret-4711"):
        assert fragment not in out
    lines = [json.loads(raw) for raw in out.splitlines() if raw.strip()]
    assert [line["path"] for line in access_lines(lines)] == ["/api/v1/tenants/me/admins"] * 2


def test_passwords_and_tokens_never_reach_the_log(client, world, capsys):
    capsys.readouterr()
    wrong_password = "wrong-Password-for-log-test-1"
    assert client.post(LOGIN, json={"email": world.owner.email, "password": wrong_password}).status_code == 401
    # An unknown field next to the password: the validation error must not echo values.
    extra_field = {"email": world.owner.email, "password": world.owner.password, "x": 1}
    assert client.post(LOGIN, json=extra_field).status_code == 422

    login = client.post(LOGIN, json={"email": world.owner.email, "password": world.owner.password})
    assert login.status_code == 200
    tokens = login.get_json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    assert client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    assert client.get("/api/v1/auth/sessions", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    # Refresh with the token in the body, then with the rotated one in the header.
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert rotated.status_code == 200, rotated.get_json()
    second = rotated.get_json()
    again = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {second['refresh_token']}"})
    assert again.status_code == 200, again.get_json()
    third = again.get_json()
    logout = client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {third['access_token']}"})
    assert logout.status_code == 204
    # Refused tokens too: a stale refresh token, a revoked and a tampered access token.
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    assert client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    assert client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {access}x"}).status_code == 401

    out = raw_output(capsys)
    assert out, "the requests produced no log output"
    secrets = [world.owner.password, wrong_password]
    for pair in (tokens, second, third):
        for name in ("access_token", "refresh_token"):
            token = pair[name]
            secrets.append(token)
            secrets.append(token.rsplit(".", 1)[-1])  # the signature alone
    for secret in secrets:
        assert secret not in out, f"a secret reached the log: {secret[:12]}..."
    # And nothing that looks like a bearer header or a JWT at all.
    assert "Bearer ey" not in out
    assert "eyJ" not in out


@pytest.fixture
def exploding_app(migrated):
    app = create_app(TestConfig)
    app.config["TESTING"] = False

    def explode():
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/__explode", "explode", requires(PUBLIC)(explode))
    return app


def test_error_log_of_a_500_names_the_exception_type_but_not_its_message(exploding_app, capsys):
    capsys.readouterr()
    response = exploding_app.test_client().get("/__explode", headers={"X-Request-ID": "req-explode-0001"})
    assert response.status_code == 500
    out = raw_output(capsys)
    assert "secret internals" not in out
    assert "hunter2" not in out
    assert "Traceback" not in out
    lines = [json.loads(raw) for raw in out.splitlines() if raw.strip()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1
    (error,) = errors
    assert error["request_id"] == "req-explode-0001"
    assert "RuntimeError" in error["error_type"]
    (access,) = access_lines(lines)
    assert access["status"] == 500
    assert access["request_id"] == "req-explode-0001"


def test_database_outage_log_has_no_connection_details(monkeypatch, migrated, capsys):
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres:db-password-77@127.0.0.1:1/wafaa_test")
    app = create_app(TestConfig)
    capsys.readouterr()
    response = app.test_client().post(LOGIN, json={"email": "owner@acme.example.com", "password": "a-long-password"})
    assert response.status_code == 503
    out = raw_output(capsys)
    for leak in ("db-password-77", "a-long-password", "Connection refused", "port 1"):
        assert leak not in out
    lines = [json.loads(raw) for raw in out.splitlines() if raw.strip()]
    assert any(line["level"] == "ERROR" and line.get("error_type") for line in lines)
    assert all(line["request_id"] == response.headers["X-Request-ID"] for line in lines)


def test_console_format_is_for_a_person_and_masks_alike(make_app, capsys):
    """LOG_FORMAT=console (development's default): one readable line, fields as
    key=value, secrets masked as in JSON."""
    import logging

    app = make_app(LOG_FORMAT="console")
    assert app.config["LOG_FORMAT"] == "console"
    capsys.readouterr()
    logging.getLogger("wafaa.test").warning("disk nearly full", extra={"free_mb": 12, "api_token": "abc123"})
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert not out.startswith("{")
    assert "WARNING" in out and "wafaa.test: disk nearly full" in out
    assert "free_mb=12" in out and "api_token=[redacted]" in out and "abc123" not in out
    logging.getLogger("gunicorn.error").info({"event": "ready", "workers": 2})
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert "gunicorn.error: ready  workers=2" in out


def test_development_logs_for_a_person_and_production_as_json(monkeypatch, tmp_path):
    from config import DevelopmentConfig, ProductionConfig

    assert DevelopmentConfig.DEFAULT_LOG_FORMAT == "console"
    assert ProductionConfig.DEFAULT_LOG_FORMAT == "json"


def test_a_message_logged_as_a_dict_becomes_fields_of_the_line(make_app, capsys):
    """gunicorn.conf.py's ready line: one JSON object, not a JSON string inside one."""
    import logging

    make_app()
    capsys.readouterr()
    logging.getLogger("gunicorn.error").info({"event": "ready", "workers": 2, "threads": 256})
    line = log_lines(capsys)[-1]
    assert line["message"] == "ready" and line["workers"] == 2 and line["threads"] == 256
    # Its keys are masked like any field.
    logging.getLogger("gunicorn.error").info({"event": "oops", "api_token": "abc123"})
    assert log_lines(capsys)[-1]["api_token"] == "[redacted]"
