"""A worker runs at most ACTIVE_REQUESTS_PER_WORKER requests inside the app at once
(wafaa.admission); the others wait their turn, and a login's waits that need no
Python (a hashing slot, the password check) leave the turn to the API."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.servers import GunicornServer, wait_until
from tests.support import PASSWORD, ApiClient

ME = "/api/v1/tenants/me"


def _lock_waiters(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()[0]


def _blocked_change(make_app, factory, superuser_url, active: str):
    """A PATCH of the tenant that waits, inside the app, on a row lock the test
    holds, and a GET by another admin of the tenant sent meanwhile: (GET's future,
    release)."""
    app = make_app(ACTIVE_REQUESTS_PER_WORKER=active)
    world = factory.world()
    api = ApiClient(app.test_client(), factory)
    owner, viewer = api.headers(world.owner), api.headers(world.viewer)
    pool = ThreadPoolExecutor(2)
    holder = psycopg.connect(superuser_url.replace("postgresql+psycopg://", "postgresql://"))
    holder.execute("SELECT 1 FROM tenants WHERE id = %s FOR UPDATE", (world.tenant.id,))
    change = pool.submit(app.test_client().patch, ME, headers=owner, json={"name": "Renamed while locked"})
    with psycopg.connect(superuser_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as watcher:
        wait_until(lambda: _lock_waiters(watcher) == 1, "no lock waiter", timeout=20, interval=0.01)
    read = pool.submit(app.test_client().get, ME, headers=viewer)

    def release():
        holder.rollback()
        holder.close()
        statuses = change.result(timeout=30).status_code, read.result(timeout=30).status_code
        pool.shutdown()
        return statuses

    return read, release


def test_with_one_admission_a_request_waits_for_the_one_inside(make_app, factory, superuser_url):
    read, release = _blocked_change(make_app, factory, superuser_url, active="1")
    time.sleep(0.5)
    assert not read.done()  # waiting its turn, not failed
    assert release() == (200, 200)


def test_with_two_admissions_a_second_request_is_served_meanwhile(make_app, factory, superuser_url):
    read, release = _blocked_change(make_app, factory, superuser_url, active="2")
    assert read.result(timeout=20).status_code == 200
    assert release() == (200, 200)


def test_a_login_waiting_for_a_hashing_slot_leaves_its_turn_to_the_api(make_app, factory):
    app = make_app(ACTIVE_REQUESTS_PER_WORKER="1", PASSWORD_HASH_CONCURRENCY="1", PASSWORD_HASH_WAIT_MS="20000")
    world = factory.world()
    api = ApiClient(app.test_client(), factory)
    viewer = api.headers(world.viewer)
    gate = app.extensions["wafaa_hashing_gate"]
    with ThreadPoolExecutor(1) as pool:
        with gate.slot():  # another login's password check
            login = pool.submit(
                app.test_client().post, "/api/v1/auth/login", json={"email": world.owner.email, "password": PASSWORD}
            )
            wait_until(lambda: len(gate._slots._cond._waiters) == 1, "no slot waiter", timeout=20, interval=0.01)
            assert api.get(ME, headers=viewer).status_code == 200  # served while the login waits
            assert not login.done()
        assert login.result(timeout=30).status_code == 200


def test_a_body_is_read_before_the_turn_and_reaches_the_app_whole(make_app, factory):
    app = make_app(ACTIVE_REQUESTS_PER_WORKER="1")
    world = factory.world()
    api = ApiClient(app.test_client(), factory)
    settings = {"greeting": "x" * 12_000}
    response = api.request("PATCH", ME, admin=world.owner, json={"settings": settings})
    assert response.status_code == 200
    assert response.get_json()["settings"] == settings


@pytest.mark.gunicorn
def test_a_slow_upload_does_not_hold_the_workers_one_turn():
    """A client that sends its headers and then trickles (here: stalls) its body
    waits outside the app: the worker's single admission stays free."""
    with GunicornServer(workers=1, threads=4, env={"ACTIVE_REQUESTS_PER_WORKER": "1"}) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as stalled:
            stalled.sendall(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            time.sleep(0.3)  # the worker's thread is now reading the body
            for _ in range(3):
                assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_the_access_line_counts_the_wait_for_a_turn(make_app, factory, superuser_url, capsys):
    """The duration logged is the client's: from arrival, the wait included."""
    read, release = _blocked_change(make_app, factory, superuser_url, active="1")
    time.sleep(0.5)
    assert release() == (200, 200)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"wafaa.access"' in line]
    (get,) = [line for line in lines if line["method"] == "GET"]
    assert get["duration_ms"] >= 500
