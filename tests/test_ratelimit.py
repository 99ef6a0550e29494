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
    # Seconds until the window resets (the IETF draft's meaning), not a Unix time;
    # the suite's limits are hourly.
    assert 0 <= int(response.headers["RateLimit-Reset"]) <= 3600


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


def test_login_is_limited_per_account_and_source_whatever_the_case(make_client, factory):
    client = make_client(RATELIMIT_LOGIN_PER_ACCOUNT="2/hour", TRUSTED_PROXY_COUNT="1")
    world = factory.world()
    email = world.owner.email
    assert _login(client, email, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert _login(client, f"  {email.upper()} ", **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    _assert_limited(_login(client, email, **{"X-Forwarded-For": "203.0.113.1"}))
    # The account's owner elsewhere is not affected: the limit cannot be spent
    # by someone else to lock them out ...
    assert _login(client, email, **{"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    # ... and neither is another account from the limited address.
    assert _login(client, world.admin.email, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200


def test_ipv6_clients_are_counted_by_their_network(make_client):
    client = make_client(RATELIMIT_LOGIN_PER_IP="3/hour", TRUSTED_PROXY_COUNT="1")
    # Three addresses of one /64: one budget.
    for address in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"):
        assert _login(client, "nobody@example.com", **{"X-Forwarded-For": address}).status_code == 401
    _assert_limited(_login(client, "nobody@example.com", **{"X-Forwarded-For": "2001:db8:1:2:aaaa::9"}))
    # The next /64 is another client.
    assert _login(client, "nobody@example.com", **{"X-Forwarded-For": "2001:db8:1:3::1"}).status_code == 401


def test_the_ipv6_grouping_is_configurable(make_client):
    client = make_client(RATELIMIT_LOGIN_PER_IP="1/hour", TRUSTED_PROXY_COUNT="1", RATELIMIT_IPV6_PREFIX="128")
    for host in ("1", "2"):
        assert _login(client, "nobody@example.com", **{"X-Forwarded-For": f"2001:db8::{host}"}).status_code == 401


def test_the_service_wide_budget_of_failed_logins_refuses_further_logins_with_429(make_client, factory, raw_db):
    client = make_client(RATELIMIT_LOGIN_FAILURES="4/hour", TRUSTED_PROXY_COUNT="1")
    world = factory.world()
    # Four failures from four addresses, each far below its own limits.
    for n in range(4):
        response = _login(client, f"guess{n}@example.com", **{"X-Forwarded-For": f"203.0.113.{n}"})
        assert response.status_code == 401
    refused = _login(client, world.owner.email, **{"X-Forwarded-For": "198.51.100.1"})
    assert refused.status_code == 429
    assert error_of(refused)["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    # Refused before any password work: nothing was written for the account.
    assert raw_db.execute("SELECT count(*) FROM auth_sessions").fetchone() == (0,)
    # Successes do not spend the budget: with a fresh budget, logins go on.
    client = make_client(RATELIMIT_LOGIN_FAILURES="1/hour", TRUSTED_PROXY_COUNT="1")
    client.application.extensions["wafaa_limiter"].reset()
    for _ in range(3):
        assert _login(client, world.owner.email).status_code == 200


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


def test_the_admin_budget_in_redis_counts_down_in_its_headers_and_survives_a_script_flush(
    make_client, factory, redis_url
):
    """One round trip per request (limits' acquire and read scripts, run as one
    script): the headers count down request by request, the budget ends in a
    429, limits' own strategy reads the same window, and a script Redis no
    longer knows (a restart, SCRIPT FLUSH) is loaded again."""
    import redis

    client = make_client(RATELIMIT_STORAGE_URI=redis_url, RATELIMIT_AUTHENTICATED="4/hour")
    world = factory.world()
    owner = {"Authorization": f"Bearer {_login(client, world.owner.email).get_json()['access_token']}"}
    first = client.get("/api/v1/tenants/me", headers=owner)
    assert (first.status_code, first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == (
        200,
        "4",
        "3",
    )
    assert 0 <= int(first.headers["RateLimit-Reset"]) <= 3600
    assert "Retry-After" not in first.headers
    redis.Redis.from_url(redis_url).script_flush()
    remaining = [client.get("/api/v1/tenants/me", headers=owner).headers["RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    _assert_limited(client.get("/api/v1/tenants/me", headers=owner))
    strategy, (item,) = client.application.extensions["wafaa_admin_budget"]
    assert strategy.get_window_stats(item, "wafaa", f"admin:{world.owner.id}").remaining == 0


def test_repeated_failures_throttle_that_source_and_the_throttle_looks_like_a_wrong_password(
    make_client, factory, raw_db
):
    client = make_client(LOGIN_LOCKOUT_THRESHOLD="3", LOGIN_THROTTLE_BASE_SECONDS="60", TRUSTED_PROXY_COUNT="1")
    world = factory.world()
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    wrong = [_login(client, world.owner.email, "not the password!", **attacker) for _ in range(3)]
    assert [r.status_code for r in wrong] == [401, 401, 401]

    throttled = _login(client, world.owner.email, **attacker)  # the right password, from the same source
    assert throttled.status_code == 401
    assert {**error_of(throttled), "request_id": None} == {**error_of(wrong[0]), "request_id": None}
    assert throttled.headers["WWW-Authenticate"] == wrong[0].headers["WWW-Authenticate"]

    # The owner, from anywhere else, logs in: guessing cannot lock them out.
    assert _login(client, world.owner.email, **{"X-Forwarded-For": "198.51.100.20"}).status_code == 200

    rows = raw_db.execute(
        "SELECT action, details ->> 'reason', (details ->> 'count')::int FROM audit_logs"
        " WHERE resource_id = %s AND action LIKE 'auth.login_%%' ORDER BY created_at",
        (str(world.owner.id),),
    ).fetchall()
    assert rows == [
        ("auth.login_failed", "bad_password", 3),  # three guesses, one row
        ("auth.login_throttled", None, None),
        ("auth.login_failed", "throttled", 1),
    ]

    # The delay runs out (moved back here rather than waited for): the source may
    # try again, and one more failure doubles its delay.
    raw_db.execute("UPDATE login_throttles SET last_failed_at = last_failed_at - interval '61 seconds'")
    assert _login(client, world.owner.email, "still not it!", **attacker).status_code == 401
    raw_db.execute("UPDATE login_throttles SET last_failed_at = last_failed_at - interval '61 seconds'")
    assert _login(client, world.owner.email, **attacker).status_code == 401  # 120 s now: still throttled
    raw_db.execute("UPDATE login_throttles SET last_failed_at = last_failed_at - interval '60 seconds'")
    assert _login(client, world.owner.email, **attacker).status_code == 200
    # A success clears that source's count.
    assert raw_db.execute("SELECT count(*) FROM login_throttles").fetchone() == (0,)


def test_failures_older_than_the_window_are_forgotten(make_client, factory, raw_db):
    client = make_client(LOGIN_LOCKOUT_THRESHOLD="2", LOGIN_LOCKOUT_WINDOW_MINUTES="15")
    admin = factory.world().owner
    for _ in range(2):
        assert _login(client, admin.email, "not the password!").status_code == 401
    assert _login(client, admin.email).status_code == 401  # throttled
    raw_db.execute("UPDATE login_throttles SET last_failed_at = now() - interval '16 minutes'")
    assert _login(client, admin.email).status_code == 200


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
