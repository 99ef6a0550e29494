"""What an attacker tried against the API (issue 9), and what happens now: no
redirect built from the Host header, the cross-tenant email oracle, session ids
out of non-owners' sight, look-alike identities, audit rows of what changed,
the login gate, and owners demoting each other at the same moment."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.servers import GunicornServer
from tests.support import PASSWORD, error_of

LOGIN = "/api/v1/auth/login"
ADMINS = "/api/v1/tenants/me/admins"
ME = "/api/v1/tenants/me"
AUDIT = "/api/v1/tenants/me/audit-logs"
NEW_PASSWORD = "a-brand-new-password-42"


def _new_admin(email: str, **extra) -> dict:
    return {"email": email, "full_name": "New Person", "role": "viewer", "password": NEW_PASSWORD, **extra}


# --- 6. no redirect built from the Host header ------------------------------------------


@pytest.mark.parametrize("path", ["/api//v1/auth/login", "//api/v1/auth/login", "/api/v1/auth//login"])
def test_doubled_slashes_are_not_redirected_to_the_host_the_request_named(client, path):
    response = client.post(path, json={"email": "a@b.c", "password": "x"}, headers={"Host": "evil.example.com"})
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert error_of(response)["code"] == "not_found"


def test_a_trailing_slash_is_served_not_redirected(api, factory):
    world = factory.world()
    response = api.get(f"{ME}/", world.viewer, headers={"Host": "evil.example.com"})
    assert response.status_code == 200
    assert "Location" not in response.headers


def test_trusted_hosts_refuse_any_other_host_in_the_error_format(make_app):
    client = make_app(TRUSTED_HOSTS='["api.example.com", ".wafaa.example"]').test_client()
    assert client.get("/api/v1/system/info", headers={"Host": "api.example.com"}).status_code == 200
    assert client.get("/api/v1/system/info", headers={"Host": "eu.wafaa.example"}).status_code == 200
    refused = client.get("/api/v1/system/info", headers={"Host": "evil.example.com"})
    assert refused.status_code == 400
    assert error_of(refused)["code"] == "bad_request"


# --- 2. the cross-tenant email oracle -------------------------------------------------------


def test_an_email_used_in_another_tenant_is_refused_without_saying_where_and_the_refusal_stands(api, factory, raw_db):
    mine, theirs = factory.world(), factory.world()
    response = api.post(ADMINS, mine.owner, json=_new_admin(theirs.owner.email))
    assert response.status_code == 409
    error = error_of(response)
    text = response.get_data(as_text=True)
    for secret in (str(theirs.tenant.id), theirs.tenant.slug, theirs.tenant.name, str(theirs.owner.id)):
        assert secret not in text
    # The same answer as for an address of the acting tenant itself.
    own = error_of(api.post(ADMINS, mine.owner, json=_new_admin(mine.viewer.email)))
    assert {**own, "request_id": None} == {**error, "request_id": None}
    # Both refusals are on record in the acting tenant, none in the other.
    rows = raw_db.execute(
        "SELECT tenant_id, user_id, details ->> 'reason', details ->> 'email' FROM audit_logs"
        " WHERE action = 'admin.create_refused' ORDER BY created_at"
    ).fetchall()
    assert rows == [
        (mine.tenant.id, mine.owner.id, "email_in_use", theirs.owner.email),
        (mine.tenant.id, mine.owner.id, "email_in_use", mine.viewer.email),
    ]
    admins = raw_db.execute("SELECT count(*) FROM tenant_admins WHERE tenant_id = %s", (mine.tenant.id,))
    assert admins.fetchone() == (3,)


def test_refusals_for_emails_in_use_have_a_small_budget_per_tenant_then_429(make_app, factory, raw_db):
    from tests.support import ApiClient

    app = make_app(ADMIN_EMAIL_CONFLICTS_PER_HOUR="2")
    api = ApiClient(app.test_client(), factory)
    mine, theirs, bystander = factory.world(), factory.world(), factory.world()
    headers = api.headers(mine.owner)
    for admin in (theirs.owner, theirs.admin):
        assert api.post(ADMINS, json=_new_admin(admin.email), headers=headers).status_code == 409
    # The budget is spent: the next probe learns nothing, nor does a new address.
    probe = api.post(ADMINS, json=_new_admin(theirs.viewer.email), headers=headers)
    assert probe.status_code == 429
    assert error_of(probe)["code"] == "rate_limited"
    assert int(probe.headers["Retry-After"]) > 0
    assert api.post(ADMINS, json=_new_admin("fresh@mine.example.com"), headers=headers).status_code == 429
    reasons = raw_db.execute(
        "SELECT details ->> 'reason' FROM audit_logs WHERE action = 'admin.create_refused' AND tenant_id = %s"
        " ORDER BY created_at",
        (mine.tenant.id,),
    ).fetchall()
    assert [r[0] for r in reasons] == ["email_in_use", "email_in_use", "too_many_refusals", "too_many_refusals"]
    # Another tenant's budget is its own.
    other = api.post(ADMINS, json=_new_admin("fresh@bystander.example.com"), headers=api.headers(bystander.owner))
    assert other.status_code == 201


def test_a_forbidden_creation_is_recorded_too(api, factory, raw_db):
    world = factory.world()
    assert api.post(ADMINS, world.viewer, json=_new_admin("x@y.example.com")).status_code == 403
    # A viewer is refused before its body is read (so no email in the row); an
    # admin asking for an owner, after.
    assert api.post(ADMINS, world.admin, json=_new_admin("y@y.example.com", role="owner")).status_code == 403
    rows = raw_db.execute(
        "SELECT user_id, details ->> 'reason', details ->> 'email' FROM audit_logs"
        " WHERE action = 'admin.create_refused' ORDER BY created_at"
    ).fetchall()
    assert rows == [(world.viewer.id, "forbidden", None), (world.admin.id, "forbidden", "y@y.example.com")]


# --- 1. session ids are the owners' only ------------------------------------------------------


def test_admins_see_session_references_and_owners_see_session_ids(api, factory):
    world = factory.world()
    api.login(world.admin)
    session_rows = {}
    for reader in (world.owner, world.admin):
        page = api.get(f"{AUDIT}?action=auth.login", reader).get_json()
        session_rows[reader.role] = {item["user_id"]: item["resource_id"] for item in page["items"]}
    real = session_rows["owner"][str(world.admin.id)]
    shown = session_rows["admin"][str(world.admin.id)]
    assert real.count("-") == 4  # a UUID
    assert shown.startswith("ref-") and real not in shown
    # Stable: the same session has the same reference every time.
    page = api.get(f"{AUDIT}?action=auth.login", world.admin).get_json()
    assert {item["user_id"]: item["resource_id"] for item in page["items"]}[str(world.admin.id)] == shown


# --- 10. look-alike identities -----------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "\u043ewner@acme.example.com",  # Cyrillic "о" among Latin letters
        "owner@\u0430cme.example.com",  # Cyrillic "а" in a Latin domain label
        "pay\u0440al@example.com",  # Cyrillic "р"
    ],
)
def test_mixed_script_emails_are_refused(api, factory, email):
    world = factory.world()
    response = api.post(ADMINS, world.owner, json=_new_admin(email))
    assert response.status_code == 422
    assert "email" in error_of(response)["details"]["json"]


def test_emails_are_stored_in_one_canonical_form_and_log_in_in_any(api, factory, raw_db):
    world = factory.world()
    # Full-width letters and "＠" fold to ASCII (NFKC); an internationalised
    # domain is stored in its IDNA form.
    for typed, stored in (
        ("\uff2e\uff45\uff57\uff20Example.COM", "new@example.com"),
        ("Hans@B\u00fccher.Example", "hans@xn--bcher-kva.example"),
        ("\u0648\u0641\u0627\u0621@example.com", "\u0648\u0641\u0627\u0621@example.com"),  # Arabic, one script
    ):
        response = api.post(ADMINS, world.owner, json=_new_admin(typed))
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["email"] == stored
        login = api.client.post(LOGIN, json={"email": typed, "password": NEW_PASSWORD})
        assert login.status_code == 200, typed
    # The IDNA form and the Unicode form are one address.
    duplicate = api.post(ADMINS, world.owner, json=_new_admin("hans@xn--bcher-kva.example"))
    assert duplicate.status_code == 409


@pytest.mark.parametrize("control", ["\u202e", "\u2066", "\u200f", "\u061c"])
def test_names_refuse_bidirectional_controls(api, factory, control):
    world = factory.world()
    created = api.post(ADMINS, world.owner, json=_new_admin("bidi@example.com", full_name=f"Eve {control}nimda"))
    assert created.status_code == 422
    assert "full_name" in error_of(created)["details"]["json"]
    renamed = api.patch(ME, world.owner, json={"name": f"Acme {control}Corp"})
    assert renamed.status_code == 422
    assert "name" in error_of(renamed)["details"]["json"]


def test_a_settings_value_with_the_text_of_a_nul_escape_is_stored_and_a_real_nul_is_not(api, factory):
    world = factory.world()
    text = "C:\\u0000\\path"  # a backslash, a "u" and zeros: text, not a NUL
    response = api.patch(ME, world.owner, json={"settings": {"greeting": text}})
    assert response.status_code == 200, response.get_json()
    assert api.get(ME, world.viewer).get_json()["settings"]["greeting"] == text
    refused = api.patch(ME, world.owner, json={"settings": {"greeting": "a\u0000b"}})
    assert refused.status_code == 422
    refused = api.patch(ME, world.owner, json={"settings": {"a\u0000b": 1}})
    assert refused.status_code == 422


# --- 8. audit rows of what changed, capped ----------------------------------------------------


def test_a_settings_patch_records_the_changed_keys_not_the_whole_settings(api, factory, raw_db):
    big = {f"key{n}": "x" * 200 for n in range(60)}  # about 13 KB of settings
    world = factory.world(settings=big)
    headers = api.headers(world.owner)
    for n in range(100):
        assert api.patch(ME, json={"settings": {"counter": n}}, headers=headers).status_code == 200
    sizes = raw_db.execute(
        "SELECT max(pg_column_size(details)), sum(pg_column_size(details)) FROM audit_logs"
        " WHERE action = 'tenant.updated'"
    ).fetchone()
    print(f"\n100 settings PATCHes: largest details {sizes[0]} B, all {sizes[1]} B")
    assert sizes[0] < 400
    last = raw_db.execute(
        "SELECT details -> 'changes' -> 'settings' FROM audit_logs WHERE action = 'tenant.updated'"
        " ORDER BY created_at DESC LIMIT 1"
    ).fetchone()[0]
    assert last == {"changed_keys": ["counter"], "before": {"counter": 98}, "after": {"counter": 99}}


def test_a_change_too_large_to_record_keeps_the_keys_and_says_it_was_cut(make_app, factory, raw_db):
    from tests.support import ApiClient

    api = ApiClient(make_app(AUDIT_DETAILS_MAX_BYTES="1024").test_client(), factory)
    world = factory.world()
    settings = {f"key{n}": "y" * 100 for n in range(30)}
    assert api.patch(ME, world.owner, json={"settings": settings}).status_code == 200
    details = raw_db.execute("SELECT details FROM audit_logs WHERE action = 'tenant.updated'").fetchone()[0]
    assert details["truncated"] is True
    assert details["changes"]["settings"]["changed_keys"] == sorted(settings)
    assert "request_id" in details
    assert len(str(details)) < 1024


# --- 4. the login gate --------------------------------------------------------------------------


def test_logins_beyond_the_gate_get_503_with_retry_after_and_the_rest_of_the_api_is_served(make_app, factory):
    from tests.support import ApiClient

    app = make_app(PASSWORD_HASH_CONCURRENCY="1", LOGIN_CONCURRENCY="2", PASSWORD_HASH_WAIT_MS="0", BCRYPT_ROUNDS="10")
    world = factory.world()
    api = ApiClient(app.test_client(), factory)
    token = api.headers(world.viewer)
    barrier = threading.Barrier(8)

    def attempt(_):
        barrier.wait(timeout=30)
        return app.test_client().post(LOGIN, json={"email": world.owner.email, "password": PASSWORD})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(attempt, range(8)))
        me = api.get(ME, headers=token)
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    for busy in (r for r in responses if r.status_code == 503):
        assert busy.headers["Retry-After"] == "1"
        assert error_of(busy)["code"] == "service_unavailable"
    assert me.status_code == 200


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's idle scheduling class")
def test_password_checks_run_in_the_idle_scheduling_class(make_app):
    """Any thread of the API that wakes takes the core from a password check."""
    app = make_app()
    with app.app_context():
        gate = app.extensions["wafaa_hashing_gate"]
        policy = gate.run(lambda: os.sched_getscheduler(threading.get_native_id()))
    assert policy == os.SCHED_IDLE
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER  # the caller's is untouched


def test_a_login_waiting_for_a_slot_has_not_touched_the_database(make_app, factory, monkeypatch):
    """The slot comes first: a login queued behind another's password check has
    made no round trip and holds no connection, so waiting costs nothing else."""
    from wafaa.services import sessions

    calls = []
    real_call = sessions.call_hot_path

    def counted(name, *args):
        calls.append(name)
        return real_call(name, *args)

    monkeypatch.setattr(sessions, "call_hot_path", counted)
    app = make_app(PASSWORD_HASH_CONCURRENCY="1", LOGIN_CONCURRENCY="8", PASSWORD_HASH_WAIT_MS="20000")
    world = factory.world()
    gate = app.extensions["wafaa_hashing_gate"]
    threads = ThreadPoolExecutor(4)
    with app.app_context():
        from wafaa.extensions import db

        pool = db.engine.pool
        with gate.slot():  # someone else's password check
            body = {"email": world.owner.email, "password": PASSWORD}
            waiting = [threads.submit(app.test_client().post, LOGIN, json=body) for _ in range(4)]
            deadline = time.monotonic() + 10
            # Until all four wait on the slot's semaphore.
            while len(gate._slots._cond._waiters) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(gate._slots._cond._waiters) == 4
            checked_out, calls_while_waiting = pool.checkedout(), list(calls)
    statuses = [future.result().status_code for future in waiting]
    threads.shutdown()
    assert checked_out == 0 and calls_while_waiting == []
    assert statuses == [200] * 4


def test_a_login_refused_by_the_failure_budget_is_held_like_one_without_a_slot(make_app):
    """Refusals must not let a flood loop faster than logins that wait: the 429
    comes after the gate's wait (PASSWORD_HASH_WAIT_MS, give or take half)."""
    client = make_app(RATELIMIT_LOGIN_FAILURES="1/hour", PASSWORD_HASH_WAIT_MS="400").test_client()
    body = {"email": "nobody@example.com", "password": "wrong-password-1"}
    assert client.post(LOGIN, json=body).status_code == 401
    started = time.monotonic()
    refused = client.post(LOGIN, json=body)
    held = time.monotonic() - started
    assert refused.status_code == 429
    assert held >= 0.2, held


def test_under_a_flood_of_failed_logins_password_checks_take_the_hosts_one_slot(make_app, factory, tmp_path):
    """Once a tenth of the failed-login budget is spent, a login's password check
    also needs the host's slot (an flock shared by the workers): while another
    process holds it, a login waits and gets 503; before the flood, it did not
    need it."""
    import fcntl

    lock_file = tmp_path / "hashing.lock"
    client = make_app(
        RATELIMIT_LOGIN_FAILURES="20/hour", PASSWORD_HASH_WAIT_MS="200", PASSWORD_HASH_LOCK_FILE=str(lock_file)
    ).test_client()
    world = factory.world()
    owner = {"email": world.owner.email, "password": PASSWORD}
    other_process = os.open(lock_file, os.O_RDWR | os.O_CREAT)  # its own open file: its own flock
    try:
        fcntl.flock(other_process, fcntl.LOCK_EX)  # another worker's password check
        assert client.post(LOGIN, json=owner).status_code == 200  # no flood: the slot is not needed
        for n in range(2):  # a tenth of 20
            assert (
                client.post(LOGIN, json={"email": f"nobody{n}@example.com", "password": "guess-1"}).status_code == 401
            )
        busy = client.post(LOGIN, json=owner)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        fcntl.flock(other_process, fcntl.LOCK_UN)
        assert client.post(LOGIN, json=owner).status_code == 200
    finally:
        os.close(other_process)


def test_the_hosts_slot_is_held_by_one_process_at_a_time(tmp_path):
    """Two processes opening the same file (two workers): while one holds the
    slot the other cannot take it, and can once it is released; one process's
    threads take turns too."""
    import subprocess
    import sys

    from wafaa.passwords import HostSlot

    path = str(tmp_path / "hashing.lock")
    try_once = (
        "import sys, time; from wafaa.passwords import HostSlot; "
        f"print(HostSlot({path!r}).acquire(time.monotonic() + 0.2))"
    )

    def other_worker() -> str:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(
            [sys.executable, "-c", try_once], capture_output=True, text=True, check=True, cwd=root
        ).stdout

    slot = HostSlot(path)
    assert slot.acquire(time.monotonic() + 1)
    assert other_worker().strip() == "False"
    assert not slot.acquire(time.monotonic() + 0.05)  # another thread of this process
    slot.release()
    assert other_worker().strip() == "True"
    assert slot.acquire(time.monotonic() + 1)
    slot.release()


# --- 9. two owners demoting each other at the same moment ----------------------------------------


def _wait_for_lock_waiters(conn, count: int, timeout: float = 20.0) -> None:
    """Until `count` backends of this database wait on a row lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        if waiting >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"fewer than {count} requests waited on the row locks")


@pytest.mark.gunicorn
def test_concurrent_mutual_demotions_never_deadlock(factory, raw_db, superuser_url):
    """Both owners' requests are authenticated (as owners) and inside the service
    at the same moment: a transaction of the test holds both rows until the two
    requests wait on them, then lets go. Locking in different orders deadlocked
    here (503); in one order, one demotion wins and the other sees that its
    sender is no longer an owner (409)."""
    env = {"DB_POOL_SIZE": "8", "RATELIMIT_AUTHENTICATED": "1000000/day"}
    outcomes = []
    with GunicornServer(workers=2, threads=4, env=env) as server, psycopg.connect(superuser_url) as gate:

        def token(admin) -> str:
            body = {"email": admin.email, "password": admin.password}
            return requests.post(f"{server.url}{LOGIN}", json=body, timeout=30).json()["access_token"]

        for _ in range(20):
            world = factory.world()
            first, second = world.owner, factory.admin(world.tenant, "owner")
            tokens = {first.id: token(first), second.id: token(second)}

            def demote(pair, tokens=tokens):
                actor, target = pair
                return requests.patch(
                    f"{server.url}{ADMINS}/{target.id}",
                    json={"role": "admin"},
                    headers={"Authorization": f"Bearer {tokens[actor.id]}"},
                    timeout=30,
                )

            gate.execute("SELECT 1 FROM tenant_admins WHERE id IN (%s, %s) FOR UPDATE", (first.id, second.id))
            with ThreadPoolExecutor(2) as pool:
                futures = [pool.submit(demote, pair) for pair in [(first, second), (second, first)]]
                _wait_for_lock_waiters(raw_db, 2)
                gate.commit()
                responses = [future.result() for future in futures]
            outcomes.append(sorted(r.status_code for r in responses))
            owners = raw_db.execute(
                "SELECT count(*) FROM tenant_admins WHERE tenant_id = %s AND role = 'owner' AND is_active",
                (world.tenant.id,),
            ).fetchone()[0]
            assert owners == 1, outcomes[-1]
    assert all(outcome == [200, 409] for outcome in outcomes), outcomes
