"""Rate limits (per client IP, per account, per admin), account lockout, and what
happens when the limiter's storage is down. Each test builds an app with its own,
low limits; counters start empty. Limits are per hour: the sliding window counter
is exact unless a test happens to straddle a window boundary, which an hour makes
vanishingly unlikely."""

from __future__ import annotations

import pytest
import requests

from tests.servers import GunicornServer
from tests.support import PASSWORD, error_of

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def make_client(make_app):
    """A test client of an app built with the given environment."""
    return lambda **env: make_app(**env).test_client()


def _login(client, email: str, password: str = PASSWORD, **headers):
    return client.post(LOGIN, json={"email": email, "password": password}, headers=headers)


def _assert_limited(response) -> None:
    assert response.status_code == 429
    error = error_of(response)
    assert error["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert header in response.headers
    assert response.headers["RateLimit-Remaining"] == "0"


def test_login_is_limited_per_client_ip_and_answers_429_in_the_error_shape(make_client, factory):
    client = make_client(RATELIMIT_LOGIN_PER_IP="3/hour")
    world = factory.world()
    statuses = [_login(client, f"nobody{n}@example.com").status_code for n in range(3)]
    assert statuses == [401, 401, 401]
    _assert_limited(_login(client, world.owner.email))  # even the right password, once over the limit


def test_rotating_a_spoofed_x_forwarded_for_does_not_escape_the_limit(make_client):
    client = make_client(RATELIMIT_LOGIN_PER_IP="3/hour")  # TRUSTED_PROXY_COUNT=0
    responses = [_login(client, "nobody@example.com", **{"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(6)]
    assert [r.status_code for r in responses] == [401, 401, 401, 429, 429, 429]


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(make_client):
    client = make_client(RATELIMIT_LOGIN_PER_IP="2/hour", TRUSTED_PROXY_COUNT="1")
    # Behind one trusted proxy each client address has its own budget.
    for n in range(4):
        assert _login(client, "nobody@example.com", **{"X-Forwarded-For": f"203.0.113.{n}"}).status_code == 401
    for _ in range(2):
        _login(client, "nobody@example.com", **{"X-Forwarded-For": "198.51.100.7"})
    _assert_limited(_login(client, "nobody@example.com", **{"X-Forwarded-For": "198.51.100.7"}))


def test_login_is_limited_per_account_whatever_the_address_or_the_case(make_client, factory):
    client = make_client(RATELIMIT_LOGIN_PER_ACCOUNT="2/hour", TRUSTED_PROXY_COUNT="1")
    world = factory.world()
    email = world.owner.email
    assert _login(client, email, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert _login(client, f"  {email.upper()} ", **{"X-Forwarded-For": "203.0.113.2"}).status_code == 200
    _assert_limited(_login(client, email, **{"X-Forwarded-For": "203.0.113.3"}))
    # Another account is not affected.
    assert _login(client, world.admin.email, **{"X-Forwarded-For": "203.0.113.3"}).status_code == 200


def test_authenticated_endpoints_are_limited_per_admin(make_client, factory):
    client = make_client(RATELIMIT_AUTHENTICATED="3/hour")
    world = factory.world()
    owner = {"Authorization": f"Bearer {_login(client, world.owner.email).get_json()['access_token']}"}
    viewer = {"Authorization": f"Bearer {_login(client, world.viewer.email).get_json()['access_token']}"}
    for _ in range(3):
        assert client.get("/api/v1/tenants/me", headers=owner).status_code == 200
    _assert_limited(client.get("/api/v1/tenants/me/admins", headers=owner))
    assert client.get("/api/v1/tenants/me", headers=viewer).status_code == 200
    # Probes and docs are never limited.
    for path in ("/health", "/api/v1/system/info", "/openapi.json") * 3:
        assert client.get(path).status_code == 200


def test_repeated_failures_lock_the_account_and_the_lock_looks_like_a_wrong_password(make_client, factory, raw_db):
    client = make_client(LOGIN_LOCKOUT_THRESHOLD="3", LOGIN_LOCKOUT_WINDOW_MINUTES="15")
    world = factory.world()
    wrong = [_login(client, world.owner.email, "not the password!") for _ in range(3)]
    assert [r.status_code for r in wrong] == [401, 401, 401]

    locked = _login(client, world.owner.email)  # the right password
    assert locked.status_code == 401
    assert {**error_of(locked), "request_id": None} == {**error_of(wrong[0]), "request_id": None}
    assert locked.headers["WWW-Authenticate"] == wrong[0].headers["WWW-Authenticate"]

    actions = [
        row[0]
        for row in raw_db.execute(
            "SELECT action FROM audit_logs WHERE resource_id = %s ORDER BY created_at", (str(world.owner.id),)
        )
    ]
    assert actions.count("auth.account_locked") == 1
    assert actions.count("auth.login_failed") == 4  # three wrong passwords, one refused while locked
    # Other accounts of the tenant are not locked.
    assert _login(client, world.admin.email).status_code == 200

    # The lock lifts as the failures age out of the window (moved 20 minutes back
    # here rather than waited for).
    raw_db.execute(
        "UPDATE audit_logs SET created_at = created_at - interval '20 minutes' WHERE resource_id = %s",
        (str(world.owner.id),),
    )
    assert _login(client, world.owner.email).status_code == 200


def test_login_is_refused_with_503_when_the_limit_storage_is_down(make_client, factory):
    client = make_client(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")  # nothing listens there
    world = factory.world()
    response = _login(client, world.owner.email)
    assert response.status_code == 503
    assert error_of(response)["code"] == "service_unavailable"
    health = client.get("/health")
    assert health.status_code == 503
    assert health.get_json()["checks"]["rate_limit_storage"] == {"status": "unavailable"}
    assert client.get("/api/v1/system/info").status_code == 200  # not limited, so not affected


@pytest.mark.gunicorn
def test_a_redis_backed_limit_holds_across_two_gunicorn_workers(redis_url, factory):
    env = {"RATELIMIT_STORAGE_URI": redis_url, "RATELIMIT_LOGIN_PER_IP": "5/hour"}
    with GunicornServer(workers=2, threads=2, env=env) as server:
        statuses = []
        for _ in range(12):
            # A new connection each time, so that both workers take requests.
            response = requests.post(
                f"{server.url}{LOGIN}",
                json={"email": "nobody@example.com", "password": PASSWORD},
                headers={"Connection": "close"},
                timeout=10,
            )
            statuses.append(response.status_code)
        assert statuses.count(401) == 5, statuses
        assert statuses.count(429) == 7, statuses
