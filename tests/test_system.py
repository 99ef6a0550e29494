"""GET /health and GET /api/v1/system/info."""

import socket
import time
from datetime import UTC, datetime

from config import TestConfig
from wafaa import create_app


def test_health_reports_database_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0


def test_health_is_503_quickly_when_database_is_unreachable(monkeypatch, migrated):
    # Nothing listens on port 1: the connection is refused at once.
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/wafaa_test")
    app = create_app(TestConfig)
    started = time.monotonic()
    response = app.test_client().get("/health")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {"database": {"status": "unavailable"}}}
    assert elapsed < 3


def test_health_gives_up_on_a_silent_server_within_about_two_seconds(monkeypatch, migrated):
    # A listener on 127.0.0.1 that completes the TCP handshake and then never
    # answers PostgreSQL's startup message: only the connect timeout can end the
    # check. (Never an address beyond this machine.)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        monkeypatch.setenv("TEST_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/wafaa_test")
        app = create_app(TestConfig)
        started = time.monotonic()
        response = app.test_client().get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 3.5


def test_system_info_names_the_service_and_nothing_about_the_platform(client):
    response = client.get("/api/v1/system/info")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"name", "version", "api_version", "status", "server_time"}
    assert body["name"] == "Wafaa AI Concierge"
    assert body["api_version"] == "v1"
    assert body["status"] == "ok"
    server_time = datetime.fromisoformat(body["server_time"])
    assert abs((datetime.now(UTC) - server_time).total_seconds()) < 5
    text = response.get_data(as_text=True).lower()
    for leak in ("python", "flask", "werkzeug", "gunicorn", "postgres", "sqlalchemy"):
        assert leak not in text
    assert "Server" not in response.headers or "python" not in response.headers["Server"].lower()
