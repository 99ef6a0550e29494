"""CORS: only the exact origins listed in CORS_ORIGINS are allowed.

Each test builds its own app with create_app(TestConfig) after setting
CORS_ORIGINS, because the origin list is read when the app is created.
"""

from __future__ import annotations

import json

import pytest

from config import TestConfig
from wafaa import create_app

ALLOWED = ["https://app.example.com", "http://localhost:3000"]
REFUSED = [
    "https://evil.test",
    "null",
    "https://app.example.com.evil.test",
    "https://evil-app.example.com",
    "https://evilapp.example.com",
    "https://sub.app.example.com",
    "http://app.example.com",  # other scheme
    "https://app.example.com:8443",  # other port
    "http://localhost:3001",
    "http://localhost",
    "https://app.example.co",
    "https://app-example.com",
]
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}


def vary(response) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()}


def cors_app(monkeypatch, origins: list[str]):
    monkeypatch.setenv("CORS_ORIGINS", json.dumps(origins))
    app = create_app(TestConfig)
    assert app.config["CORS_ORIGINS"] == origins
    return app


@pytest.fixture
def cors_client(monkeypatch, migrated):
    return cors_app(monkeypatch, ALLOWED).test_client()


@pytest.mark.parametrize("origin", ALLOWED)
def test_allowed_origin_is_echoed_on_a_simple_request_with_vary_origin(cors_client, origin):
    response = cors_client.get("/api/v1/system/info", headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "origin" in vary(response)
    # No cookies are used, so credentials are never allowed.
    assert "Access-Control-Allow-Credentials" not in response.headers
    # The client may read the request id and rate-limit headers.
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert "x-request-id" in exposed
    assert {"location", "etag", "retry-after", "ratelimit-reset"} <= exposed


@pytest.mark.parametrize("origin", ALLOWED)
def test_allowed_origin_gets_a_preflight_answer_with_vary_origin(cors_client, origin):
    response = cors_client.options("/api/v1/auth/login", headers={"Origin": origin, **PREFLIGHT})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "origin" in vary(response)
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert "POST" in methods
    allowed_headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_preflight_of_an_authenticated_endpoint_needs_no_token(cors_client):
    response = cors_client.options(
        "/api/v1/tenants/me", headers={"Origin": ALLOWED[0], "Access-Control-Request-Method": "PATCH"}
    )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED[0]


def test_allowed_origin_is_echoed_on_error_responses_too(cors_client):
    # A browser can only read an error body (and its request id) if CORS allows it.
    response = cors_client.get("/api/v1/tenants/me", headers={"Origin": ALLOWED[0]})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED[0]


def test_a_request_without_origin_gets_no_cors_headers_but_vary_origin(cors_client):
    # Not a browser's cross-origin request: nothing to allow. (flask-cors' default
    # would list every allowed origin, one Access-Control-Allow-Origin each.)
    response = cors_client.get("/api/v1/system/info")
    assert response.status_code == 200
    assert not [name for name in response.headers.keys() if name.lower().startswith("access-control-")]
    assert "origin" in vary(response)  # a cache must still keep the answers apart


@pytest.mark.parametrize("origin", REFUSED)
def test_other_origins_get_no_allow_origin_on_a_simple_request(cors_client, origin):
    response = cors_client.get("/api/v1/system/info", headers={"Origin": origin})
    assert response.status_code == 200  # the request itself is served; the browser hides it
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origin", REFUSED)
def test_other_origins_get_no_allow_origin_on_a_preflight(cors_client, origin):
    response = cors_client.options("/api/v1/auth/login", headers={"Origin": origin, **PREFLIGHT})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers
    assert "Access-Control-Allow-Headers" not in response.headers


def test_allow_origin_is_never_a_wildcard(cors_client):
    for origin in [*ALLOWED, *REFUSED]:
        for response in (
            cors_client.get("/api/v1/system/info", headers={"Origin": origin}),
            cors_client.options("/api/v1/auth/login", headers={"Origin": origin, **PREFLIGHT}),
        ):
            assert response.headers.get("Access-Control-Allow-Origin") != "*"


def test_a_single_allowed_origin_is_echoed_with_vary_origin(monkeypatch, migrated):
    # With one configured origin the answer still depends on the request's Origin
    # (allowed: the header; anything else: none), so caches must key on it.
    client = cors_app(monkeypatch, ["https://app.example.com"]).test_client()
    response = client.get("/api/v1/system/info", headers={"Origin": "https://app.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "origin" in vary(response)
    refused = client.get("/api/v1/system/info", headers={"Origin": "https://app.example.com.evil.test"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_without_cors_origins_no_origin_is_allowed(client):
    # The session app is built with the default: an empty list.
    for origin in [*ALLOWED, "null"]:
        response = client.get("/api/v1/system/info", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers
        preflight = client.options("/api/v1/auth/login", headers={"Origin": origin, **PREFLIGHT})
        assert "Access-Control-Allow-Origin" not in preflight.headers
