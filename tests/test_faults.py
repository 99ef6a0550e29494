"""Database faults under gunicorn: an outage, the recovery, an exhausted pool.

The outage test stops and starts a PostgreSQL of its own (tests/private_pg.py),
never the shared server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.private_pg import PrivatePostgres
from tests.servers import GunicornServer
from wafaa.db_roles import bootstrap

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).with_name("flask")
SEED_PASSWORD = "wafaa-demo-password"


@pytest.fixture(scope="module")
def private_pg(migrated):
    """A private PostgreSQL with a migrated, seeded database."""
    server = PrivatePostgres()
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE wafaa_fault_test")
        urls = bootstrap(server.url("wafaa_fault_test"))
        server.env = {"TEST_DATABASE_URL": urls.service, "TEST_MIGRATION_DATABASE_URL": urls.owner}
        env = {**os.environ, "APP_ENV": "testing", **server.env}
        for command in (["db", "upgrade"], ["seed"]):
            subprocess.run([str(FLASK), "--app", "wsgi", *command], cwd=ROOT, env=env, check=True, capture_output=True)
        yield server
    finally:
        server.destroy()


def _login(url: str) -> dict:
    response = requests.post(
        f"{url}/api/v1/auth/login", json={"email": "owner@acme.example.com", "password": SEED_PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_outage_is_503_everywhere_and_the_app_recovers_without_restart(private_pg):
    env = private_pg.env
    with GunicornServer(workers=1, threads=4, env=env) as server:
        tokens = _login(server.url)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert requests.get(f"{server.url}/api/v1/tenants/me", headers=bearer, timeout=10).status_code == 200

        private_pg.stop()
        try:
            started = time.monotonic()
            health = requests.get(f"{server.url}/health", timeout=10)
            assert time.monotonic() - started < 3
            assert health.status_code == 503
            assert health.json()["checks"]["database"] == {"status": "unavailable"}
            # Liveness asks nothing of the database: the process is fine.
            assert requests.get(f"{server.url}/livez", timeout=10).json() == {"status": "ok"}
            ready = requests.get(f"{server.url}/readyz", timeout=10)
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "checks": {"database": {"status": "unavailable"}}}

            # The revocation check cannot reach the database: the request is
            # refused, as unavailable, not let through and not blamed on the token.
            for _ in range(3):
                me = requests.get(f"{server.url}/api/v1/tenants/me", headers=bearer, timeout=10)
                assert me.status_code == 503, me.text
                assert me.json()["error"]["code"] == "service_unavailable"
                assert "Retry-After" in me.headers
            login = requests.post(
                f"{server.url}/api/v1/auth/login",
                json={"email": "owner@acme.example.com", "password": SEED_PASSWORD},
                timeout=10,
            )
            assert login.status_code == 503
            assert login.json()["error"]["code"] == "service_unavailable"
            assert server.process.poll() is None, "the app must stay up"
        finally:
            private_pg.start()

        # Back: requests succeed again, same processes, no restart.
        statuses = []
        for _ in range(10):
            statuses.append(requests.get(f"{server.url}/api/v1/tenants/me", headers=bearer, timeout=10).status_code)
            if statuses[-1] == 200:
                break
            time.sleep(0.5)
        assert statuses[-1] == 200, statuses
        assert all(
            requests.get(f"{server.url}/api/v1/tenants/me", headers=bearer, timeout=10).status_code == 200
            for _ in range(5)
        )
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
        assert _login(server.url)["access_token"]


def test_exhausted_pool_answers_503_after_pool_timeout_instead_of_hanging(factory, raw_db):
    world = factory.world()
    env = {"DB_POOL_SIZE": "1", "DB_MAX_OVERFLOW": "0", "DB_POOL_TIMEOUT": "1", "DB_STATEMENT_TIMEOUT_MS": "30000"}
    with GunicornServer(workers=1, threads=6, env=env) as server:
        token = requests.post(
            f"{server.url}/api/v1/auth/login",
            json={"email": world.owner.email, "password": world.owner.password},
            timeout=10,
        ).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}

        # Hold a lock every request needs: the first request takes the pool's only
        # connection and waits on the lock, keeping the connection busy.
        results: dict[str, requests.Response] = {}
        with raw_db.transaction():
            raw_db.execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
            holder = threading.Thread(
                target=lambda: results.update(
                    holder=requests.get(f"{server.url}/api/v1/tenants/me", headers=bearer, timeout=60)
                )
            )
            holder.start()
            time.sleep(1)

            def excess(n: int) -> None:
                results[f"excess-{n}"] = requests.get(f"{server.url}/api/v1/tenants/me", headers=bearer, timeout=20)

            threads = [threading.Thread(target=excess, args=(n,)) for n in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            for n in range(3):
                response = results[f"excess-{n}"]
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "service_unavailable"
        # Lock released: the request that held the connection completes.
        holder.join(timeout=30)
        assert results["holder"].status_code == 200
        assert requests.get(f"{server.url}/api/v1/tenants/me", headers=bearer, timeout=10).status_code == 200
