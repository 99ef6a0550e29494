"""Two app instances (two gunicorn masters on two ports) sharing one PostgreSQL and
one Redis, as two hosts behind a load balancer would."""

from __future__ import annotations

import pytest
import requests

from tests.servers import GunicornServer

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]


@pytest.fixture
def two_instances(redis_url):
    env = {"RATELIMIT_STORAGE_URI": redis_url, "RATELIMIT_LOGIN_PER_ACCOUNT": "4/hour"}
    with (
        GunicornServer(workers=1, threads=4, env=env) as first,
        GunicornServer(workers=1, threads=4, env=env) as second,
    ):
        yield first, second


def _login(server: GunicornServer, email: str, password: str) -> requests.Response:
    return requests.post(f"{server.url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=10)


def test_a_logout_on_one_instance_is_refused_on_the_other_at_once(two_instances, factory):
    first, second = two_instances
    world = factory.world()
    tokens = _login(first, world.owner.email, world.owner.password).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(f"{second.url}/api/v1/tenants/me", headers=bearer, timeout=10).status_code == 200

    assert requests.post(f"{first.url}/api/v1/auth/logout", headers=bearer, timeout=10).status_code == 204

    refused = requests.get(f"{second.url}/api/v1/tenants/me", headers=bearer, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "token_revoked"
    refresh = requests.post(
        f"{second.url}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=10
    )
    assert refresh.status_code == 401
    assert refresh.json()["error"]["code"] == "token_revoked"


def test_a_rate_limit_counts_requests_sent_to_both_instances(two_instances, factory):
    first, second = two_instances
    world = factory.world()
    statuses = [
        _login(server, world.viewer.email, "a wrong password!").status_code
        for server in (first, second, first, second, first, second)
    ]
    # 4/hour per account: four attempts in all, not four per instance.
    assert statuses == [401, 401, 401, 401, 429, 429]
