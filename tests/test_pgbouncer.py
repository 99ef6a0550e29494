"""The service behind PgBouncer in transaction pooling mode, with ONE server
connection for the service's role: every transaction of every request of two app
instances runs on the same PostgreSQL backend, one after another. Nothing a
transaction sets (tenant binding, role, proof) may reach the next one, and the
setting that turns server-side statement preparation on is shown to be the one
that breaks there, answered 503 (never 500).

The whole API suite also runs through a PgBouncer with TEST_LANE=pgbouncer
(`make test`, the Makefile's lanes).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.pgbouncer import PgBouncer, installed
from tests.servers import GunicornServer
from wafaa.db_roles import DEFAULT_SERVICE, with_user

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

if not installed():
    if os.environ.get("CI"):
        pytest.fail("PgBouncer is required in CI (apt-get install pgbouncer)", pytrace=False)
    pytestmark.append(pytest.mark.skip(reason="PgBouncer is not installed (apt-get install pgbouncer)"))

ME = "/api/v1/tenants/me"


@pytest.fixture
def one_server_connection(superuser_url, migrated):
    with PgBouncer(superuser_url, users=[DEFAULT_SERVICE], pool_size=1) as bouncer:
        yield bouncer


@pytest.fixture
def service_url(superuser_url) -> str:
    return with_user(superuser_url, DEFAULT_SERVICE)


def _instances(bouncer: PgBouncer, service_url: str, redis_url: str, **env: str):
    env = {
        "TEST_DATABASE_URL": bouncer.url(service_url),
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_LOGIN_PER_ACCOUNT": "4/hour",
        **env,
    }
    return GunicornServer(workers=1, threads=4, env=env), GunicornServer(workers=1, threads=4, env=env)


def _login(server: GunicornServer, email: str, password: str) -> requests.Response:
    return requests.post(f"{server.url}/api/v1/auth/login", json={"email": email, "password": password}, timeout=15)


def _server_connections(bouncer: PgBouncer) -> int:
    """Server connections PgBouncer holds for the service's role, in any state."""
    pool = next(pool for pool in bouncer.admin("SHOW POOLS") if pool["user"] == DEFAULT_SERVICE)
    return sum(pool[state] for state in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))


def test_interleaved_tenants_on_one_server_connection_each_see_only_their_own(
    one_server_connection, service_url, redis_url, factory
):
    bouncer = one_server_connection
    worlds = [factory.world() for _ in range(3)]
    first, second = _instances(bouncer, service_url, redis_url)
    with first, second:
        tokens = [_login(first, world.owner.email, world.owner.password).json()["access_token"] for world in worlds]

        def fetch(job: tuple[int, GunicornServer, str]) -> tuple[int, int, dict]:
            index, server, path = job
            answer = requests.get(
                f"{server.url}{path}", headers={"Authorization": f"Bearer {tokens[index]}"}, timeout=30
            )
            return index, answer.status_code, answer.json()

        # Tenants, instances and endpoints interleaved: consecutive requests are
        # of different tenants, and all of them queue for the same backend.
        paths = (ME, f"{ME}/admins", f"{ME}/audit-logs")
        jobs = [
            (index, server, path)
            for _, index, server, path in zip(
                range(240), itertools.cycle(range(3)), itertools.cycle((first, second)), itertools.cycle(paths)
            )
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(fetch, jobs))
        assert _server_connections(bouncer) <= 1

    for index, status, body in answers:
        assert status == 200, body
        world = worlds[index]
        foreign = {str(other.tenant.id) for other in worlds if other is not world}
        foreign |= {admin.email for other in worlds if other is not world for admin in (other.owner, other.viewer)}
        assert not any(value in str(body) for value in foreign)
        if "items" in body and body["items"] and "email" in body["items"][0]:
            assert {item["email"] for item in body["items"]} == {
                world.owner.email,
                world.admin.email,
                world.viewer.email,
            }
        elif "slug" in body:
            assert body["id"] == str(world.tenant.id)

    # The backend those 240 transactions ran on, as the next client finds it:
    # the service's own role, no tenant bound, no rows visible.
    with psycopg.connect(bouncer.url(service_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_user, coalesce(current_setting('app.tenant_id', true), ''), "
            "coalesce(current_setting('app.tenant_proof', true), ''), (SELECT count(*) FROM tenants)"
        ).fetchone()
    assert row == (DEFAULT_SERVICE, "", "", 0)


def test_revocation_and_rate_limits_hold_across_instances_through_the_pool(
    one_server_connection, service_url, redis_url, factory
):
    world = factory.world()
    first, second = _instances(one_server_connection, service_url, redis_url)
    with first, second:
        tokens = _login(first, world.owner.email, world.owner.password).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert requests.get(f"{second.url}{ME}", headers=bearer, timeout=15).status_code == 200
        assert requests.post(f"{first.url}/api/v1/auth/logout", headers=bearer, timeout=15).status_code == 204
        refused = requests.get(f"{second.url}{ME}", headers=bearer, timeout=15)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "token_revoked")

        statuses = [
            _login(server, world.viewer.email, "a wrong password!").status_code
            for server in (first, second, first, second, first, second)
        ]
    assert statuses == [401, 401, 401, 401, 429, 429]


def test_statement_preparation_behind_transaction_pooling_answers_503_never_500(
    one_server_connection, service_url, redis_url, factory
):
    """DB_PREPARE_THRESHOLD=0 prepares every statement: two client connections
    sharing one backend then collide on psycopg's statement names. The requests
    that meet it get 503, the connection is discarded, and nothing else fails."""
    world = factory.world()
    first, second = _instances(
        one_server_connection, service_url, redis_url, DB_PREPARE_THRESHOLD="0", RATELIMIT_LOGIN_PER_ACCOUNT="100/hour"
    )
    with first, second:
        statuses = []
        for server in itertools.islice(itertools.cycle((first, second)), 12):
            answer = _login(server, world.owner.email, world.owner.password)
            statuses.append(answer.status_code)
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 503:
                assert answer.json()["error"]["code"] == "service_unavailable"
                assert "Retry-After" in answer.headers
        log = first.output() + second.output()
    assert 503 in statuses
    assert "prepared statement lost" in log
    assert "Traceback" not in log


def test_statement_preparation_works_on_a_direct_connection(service_url, redis_url, factory):
    world = factory.world()
    env = {"TEST_DATABASE_URL": service_url, "DB_PREPARE_THRESHOLD": "0", "RATELIMIT_STORAGE_URI": redis_url}
    with GunicornServer(workers=1, threads=2, env=env) as server:
        token = _login(server, world.owner.email, world.owner.password).json()["access_token"]
        answers = [
            requests.get(f"{server.url}{ME}", headers={"Authorization": f"Bearer {token}"}, timeout=15)
            for _ in range(5)
        ]
    assert [answer.status_code for answer in answers] == [200] * 5
