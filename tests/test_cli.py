"""Operator commands: flask seed, flask tenants ..., flask admins ...

Commands run through Flask's CLI runner against the test database; their effects
are checked in the tables (raw_db, beneath the app) and through the API (login,
token use), never by trusting the command's own output alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import assert_refused, error_of

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/api/v1/auth/login"
SEED_PASSWORD = "wafaa-demo-password"  # TestConfig's SEED_ADMIN_PASSWORD
DEMO_SLUGS = ("acme", "globex", "initech")
NEW_PASSWORD = "a-brand-new-password-42"
TABLES = ("tenants", "tenant_admins", "auth_sessions", "audit_logs")


def counts(raw_db) -> dict[str, int]:
    return {table: raw_db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def audit_actions(raw_db, tenant_slug: str | None = None) -> list[str]:
    if tenant_slug is None:
        rows = raw_db.execute("SELECT action FROM audit_logs ORDER BY created_at").fetchall()
    else:
        rows = raw_db.execute(
            "SELECT a.action FROM audit_logs a JOIN tenants t ON t.id = a.tenant_id "
            "WHERE t.slug = %s ORDER BY a.created_at",
            [tenant_slug],
        ).fetchall()
    return [r[0] for r in rows]


def login(client, email: str, password: str):
    return client.post(LOGIN, json={"email": email, "password": password})


def create_tenant(cli, slug="wonka", email="willy@wonka.example.com", password="chocolate-factory-1", **extra):
    args = [
        "tenants",
        "create",
        "--name",
        extra.pop("name", "Wonka Industries"),
        "--slug",
        slug,
        "--owner-email",
        email,
        "--owner-name",
        extra.pop("owner_name", "Willy Wonka"),
        "--password-stdin",
    ]
    for option, value in extra.items():
        args += [f"--{option.replace('_', '-')}", value]
    return cli(*args, input=password + "\n")


# --- flask seed -------------------------------------------------------------------------


def test_seed_creates_three_tenants_each_with_an_owner_an_admin_and_a_viewer(cli, raw_db):
    result = cli("seed")
    assert result.exit_code == 0, result.output

    tenants = raw_db.execute("SELECT slug, is_active FROM tenants ORDER BY slug").fetchall()
    assert tenants == [(slug, True) for slug in DEMO_SLUGS]
    admins = raw_db.execute(
        "SELECT t.slug, a.email, a.role::text, a.is_active FROM tenant_admins a "
        "JOIN tenants t ON t.id = a.tenant_id ORDER BY a.email"
    ).fetchall()
    expected = sorted(
        (slug, f"{role}@{slug}.example.com", role, True) for slug in DEMO_SLUGS for role in ("owner", "admin", "viewer")
    )
    assert sorted(admins) == expected


def test_seeded_admins_can_log_in_with_the_seed_password(cli, client):
    assert cli("seed").exit_code == 0
    for slug in DEMO_SLUGS:
        for role in ("owner", "viewer"):
            response = login(client, f"{role}@{slug}.example.com", SEED_PASSWORD)
            assert response.status_code == 200, (slug, role, response.get_json())
            me = client.get(
                "/api/v1/tenants/me", headers={"Authorization": f"Bearer {response.get_json()['access_token']}"}
            )
            assert me.status_code == 200
            assert me.get_json()["slug"] == slug
    assert login(client, "owner@acme.example.com", "not-the-seed-password").status_code == 401


def test_seed_password_is_stored_hashed(cli, raw_db):
    assert cli("seed").exit_code == 0
    hashes = [r[0] for r in raw_db.execute("SELECT password_hash FROM tenant_admins").fetchall()]
    assert len(hashes) == 9
    assert all(h.startswith("$2") and SEED_PASSWORD not in h for h in hashes)
    assert len(set(hashes)) == 9  # salted: equal passwords, different hashes


def test_seed_writes_audit_rows_for_every_tenant_and_admin(cli, raw_db):
    assert cli("seed").exit_code == 0
    for slug in DEMO_SLUGS:
        actions = audit_actions(raw_db, slug)
        assert actions.count("tenant.created") == 1, (slug, actions)
        assert actions.count("admin.created") == 3, (slug, actions)
    rows = raw_db.execute(
        "SELECT a.resource_id, a.user_id, a.details FROM audit_logs a "
        "WHERE a.action = 'admin.created' ORDER BY a.created_at"
    ).fetchall()
    admin_ids = {str(r[0]) for r in raw_db.execute("SELECT id FROM tenant_admins").fetchall()}
    assert {r[0] for r in rows} == admin_ids
    for _resource_id, user_id, details in rows:
        assert user_id is None  # an operator, not an admin, did it
        assert "password_hash" not in details.get("after", {})
        assert SEED_PASSWORD not in str(details)


def test_second_seed_changes_nothing_and_says_so(cli, raw_db):
    first = cli("seed")
    assert first.exit_code == 0
    before = counts(raw_db)
    hashes_before = raw_db.execute(
        "SELECT email, password_hash, updated_at FROM tenant_admins ORDER BY email"
    ).fetchall()

    second = cli("seed")
    assert second.exit_code == 0, second.output
    assert counts(raw_db) == before
    assert raw_db.execute("SELECT email, password_hash, updated_at FROM tenant_admins ORDER BY email").fetchall() == (
        hashes_before
    )
    assert "nothing changed" in second.output.lower()
    assert second.output != first.output


def test_seed_fills_in_what_is_missing(cli, raw_db, factory):
    # An existing acme tenant (say, created by hand) is reused, not duplicated.
    factory.tenant(slug="acme", name="Acme by hand")
    result = cli("seed")
    assert result.exit_code == 0, result.output
    assert raw_db.execute("SELECT count(*) FROM tenants WHERE slug = 'acme'").fetchone()[0] == 1
    assert raw_db.execute("SELECT name FROM tenants WHERE slug = 'acme'").fetchone()[0] == "Acme by hand"
    assert counts(raw_db)["tenant_admins"] == 9


def test_seed_without_seed_admin_password_exits_1_and_writes_nothing(cli, app, raw_db, monkeypatch):
    monkeypatch.setitem(app.config, "SEED_ADMIN_PASSWORD", "")
    result = cli("seed")
    assert_refused(result, "SEED_ADMIN_PASSWORD")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


def test_seed_with_a_too_short_seed_admin_password_exits_1(cli, app, raw_db, monkeypatch):
    monkeypatch.setitem(app.config, "SEED_ADMIN_PASSWORD", "short")
    assert_refused(cli("seed"), "SEED_ADMIN_PASSWORD")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


# --- flask tenants create -----------------------------------------------------------------


def test_tenants_create_creates_the_tenant_and_an_owner_who_can_log_in(cli, client, raw_db):
    result = create_tenant(cli, tier="premium")
    assert result.exit_code == 0, result.output
    assert "wonka" in result.output

    tenant = raw_db.execute(
        "SELECT name, subscription_tier::text, is_active FROM tenants WHERE slug = 'wonka'"
    ).fetchone()
    assert tenant == ("Wonka Industries", "premium", True)
    owner = raw_db.execute("SELECT email, full_name, role::text FROM tenant_admins").fetchall()
    assert owner == [("willy@wonka.example.com", "Willy Wonka", "owner")]

    response = login(client, "willy@wonka.example.com", "chocolate-factory-1")
    assert response.status_code == 200, response.get_json()


def test_tenants_create_writes_audit_rows(cli, raw_db):
    assert create_tenant(cli).exit_code == 0
    assert sorted(audit_actions(raw_db, "wonka")) == ["admin.created", "tenant.created"]


def test_tenants_create_normalises_the_owner_email(cli, client, raw_db):
    assert create_tenant(cli, email="  Willy@Wonka.Example.COM ").exit_code == 0
    assert raw_db.execute("SELECT email FROM tenant_admins").fetchone()[0] == "willy@wonka.example.com"
    assert login(client, "WILLY@wonka.example.com", "chocolate-factory-1").status_code == 200


def test_tenants_create_with_a_duplicate_slug_exits_1_and_writes_nothing(cli, raw_db):
    assert create_tenant(cli).exit_code == 0
    before = counts(raw_db)
    result = create_tenant(cli, email="other@wonka.example.com", name="Another Wonka")
    assert_refused(result, "wonka", "exists")
    assert counts(raw_db) == before


def test_tenants_create_with_a_duplicate_email_in_any_case_exits_1_and_writes_nothing(cli, raw_db):
    assert create_tenant(cli).exit_code == 0
    before = counts(raw_db)
    result = create_tenant(cli, slug="wonka-two", email="WILLY@Wonka.example.com")
    assert_refused(result, "exists")
    assert counts(raw_db) == before
    assert raw_db.execute("SELECT count(*) FROM tenants WHERE slug = 'wonka-two'").fetchone()[0] == 0


@pytest.mark.parametrize("slug", ["Wonka", "wonka industries", "-wonka", "wonka-", "won--ka", "w" * 101, "wönka"])
def test_tenants_create_with_an_invalid_slug_exits_1(cli, raw_db, slug):
    assert_refused(create_tenant(cli, slug=slug), "slug")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("password", ["short", "elevenchars", ""])
def test_tenants_create_with_a_short_password_exits_1(cli, raw_db, password):
    assert_refused(create_tenant(cli, password=password), "password")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("email", ["not-an-email", "willy@", "@wonka.example.com", "willy wonka@example.com"])
def test_tenants_create_with_a_bad_email_exits_1(cli, raw_db, email):
    assert_refused(create_tenant(cli, email=email), "email")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


def test_tenants_create_with_a_blank_name_exits_1(cli, raw_db):
    assert_refused(create_tenant(cli, name="   "), "name")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


# --- flask tenants list / deactivate / activate -----------------------------------------------


def test_tenants_list_shows_every_tenant_with_its_state_and_admin_count(cli, factory):
    world = factory.world(slug="alpha")
    factory.tenant(slug="beta", is_active=False)
    result = cli("tenants", "list")
    assert result.exit_code == 0, result.output
    header, *lines = [line.split("\t") for line in result.output.strip().splitlines()]
    assert header == ["slug", "id", "tier", "state", "admins"]
    assert [line[0] for line in lines] == ["alpha", "beta"]
    alpha, beta = lines
    assert alpha[1] == str(world.tenant.id)
    assert "active" in alpha and "3 admins" in alpha
    assert "inactive" in beta and "0 admins" in beta
    factory.admin(factory.tenant(slug="gamma"), "owner")
    gamma = [line for line in cli("tenants", "list").output.splitlines() if line.startswith("gamma")]
    assert gamma[0].endswith("\t1 admin")


def test_tenants_deactivate_revokes_sessions_and_refuses_logins(cli, api, factory, raw_db):
    world = factory.world(slug="alpha")
    tokens = api.login(world.owner)
    other = factory.world(slug="beta")
    other_tokens = api.login(other.owner)

    result = cli("tenants", "deactivate", "alpha")
    assert result.exit_code == 0, result.output

    me = api.client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 401
    assert error_of(me)["code"] == "token_revoked"
    refreshed = api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    assert error_of(refreshed)["code"] == "token_revoked"
    for admin in (world.owner, world.viewer):
        refused = login(api.client, admin.email, admin.password)
        assert refused.status_code == 401
        assert error_of(refused)["code"] == "invalid_credentials"

    # The other tenant is untouched.
    other_me = api.client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {other_tokens['access_token']}"})
    assert other_me.status_code == 200

    assert raw_db.execute("SELECT is_active FROM tenants WHERE slug = 'alpha'").fetchone()[0] is False
    reasons = raw_db.execute(
        "SELECT revoked_reason FROM auth_sessions WHERE tenant_id = %s", [world.tenant.id]
    ).fetchall()
    assert reasons == [("tenant_deactivated",)]
    assert "tenant.deactivated" in audit_actions(raw_db, "alpha")


def test_tenants_activate_lets_admins_log_in_again_but_old_sessions_stay_revoked(cli, api, factory, raw_db):
    world = factory.world(slug="alpha")
    old = api.login(world.owner)
    assert cli("tenants", "deactivate", "alpha").exit_code == 0

    result = cli("tenants", "activate", "alpha")
    assert result.exit_code == 0, result.output

    assert raw_db.execute("SELECT is_active FROM tenants WHERE slug = 'alpha'").fetchone()[0] is True
    fresh = login(api.client, world.owner.email, world.owner.password)
    assert fresh.status_code == 200
    stale = api.client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {old['access_token']}"})
    assert stale.status_code == 401
    assert error_of(stale)["code"] == "token_revoked"
    assert "tenant.reactivated" in audit_actions(raw_db, "alpha")


@pytest.mark.parametrize("command", ["deactivate", "activate"])
def test_tenants_activate_or_deactivate_an_unknown_slug_exits_1(cli, raw_db, command):
    assert_refused(cli("tenants", command, "no-such-tenant"), "no-such-tenant")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


# --- flask admins create / set-password -----------------------------------------------------


def test_admins_create_adds_an_admin_who_can_log_in(cli, client, factory, raw_db):
    world = factory.world(slug="alpha")
    result = cli(
        "admins",
        "create",
        "--tenant",
        "alpha",
        "--email",
        "New.Admin@Alpha.Example.com",
        "--name",
        "New Admin",
        "--role",
        "admin",
        "--password-stdin",
        input="new-admin-password-1\n",
    )
    assert result.exit_code == 0, result.output
    row = raw_db.execute(
        "SELECT tenant_id, full_name, role::text FROM tenant_admins WHERE email = 'new.admin@alpha.example.com'"
    ).fetchone()
    assert row == (world.tenant.id, "New Admin", "admin")
    response = login(client, "new.admin@alpha.example.com", "new-admin-password-1")
    assert response.status_code == 200
    assert "admin.created" in audit_actions(raw_db, "alpha")


def _create_admin(cli, slug="alpha", email="someone@alpha.example.com", password="long-enough-password", role="viewer"):
    return cli(
        "admins",
        "create",
        "--tenant",
        slug,
        "--email",
        email,
        "--name",
        "Someone",
        "--role",
        role,
        "--password-stdin",
        input=password + "\n",
    )


def test_admins_create_refuses_an_email_already_used_in_another_tenant(cli, factory, raw_db):
    factory.world(slug="alpha")
    beta = factory.world(slug="beta")
    before = counts(raw_db)
    assert_refused(_create_admin(cli, email=beta.viewer.email.upper()), "exists")
    assert counts(raw_db) == before


def test_admins_create_in_an_unknown_tenant_exits_1(cli, raw_db):
    assert_refused(_create_admin(cli, slug="no-such-tenant"), "no-such-tenant")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


def test_admins_create_with_a_short_password_or_bad_email_exits_1(cli, factory, raw_db):
    factory.world(slug="alpha")
    before = counts(raw_db)
    assert_refused(_create_admin(cli, password="short"), "password")
    assert_refused(_create_admin(cli, email="not-an-email"), "email")
    assert counts(raw_db) == before


def test_admins_create_with_an_unknown_role_is_refused(cli, factory, raw_db):
    factory.world(slug="alpha")
    before = counts(raw_db)
    result = _create_admin(cli, role="superuser")
    assert result.exit_code != 0
    assert counts(raw_db) == before


def test_admins_set_password_replaces_the_password_and_revokes_sessions(cli, api, factory, raw_db):
    world = factory.world(slug="alpha")
    tokens = api.login(world.admin)
    bystander = api.login(world.owner)

    result = cli("admins", "set-password", world.admin.email.upper(), "--password-stdin", input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output

    old = login(api.client, world.admin.email, world.admin.password)
    assert old.status_code == 401
    assert error_of(old)["code"] == "invalid_credentials"
    assert login(api.client, world.admin.email, NEW_PASSWORD).status_code == 200

    revoked = api.client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert revoked.status_code == 401
    assert error_of(revoked)["code"] == "token_revoked"
    refreshed = api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    # Only that admin's sessions end.
    other = api.client.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {bystander['access_token']}"})
    assert other.status_code == 200

    actions = audit_actions(raw_db, "alpha")
    assert "admin.password_changed" in actions
    details = raw_db.execute("SELECT details FROM audit_logs WHERE action = 'admin.password_changed'").fetchone()[0]
    assert NEW_PASSWORD not in str(details)


def test_admins_set_password_refuses_a_short_password_and_keeps_the_old_one(cli, client, factory):
    world = factory.world(slug="alpha")
    assert_refused(cli("admins", "set-password", world.owner.email, "--password-stdin", input="short\n"), "password")
    assert login(client, world.owner.email, world.owner.password).status_code == 200


def test_admins_set_password_for_an_unknown_email_exits_1(cli, raw_db):
    result = cli("admins", "set-password", "nobody@nowhere.example.com", "--password-stdin", input=NEW_PASSWORD + "\n")
    assert_refused(result, "nobody@nowhere.example.com")
    assert counts(raw_db) == dict.fromkeys(TABLES, 0)


# --- the real `flask` command -------------------------------------------------------------------


def test_the_flask_command_line_runs_the_commands(migrated, raw_db):
    """`flask --app wsgi ...` as an operator types it, in a separate process."""
    env = {**os.environ, "APP_ENV": "testing", "TEST_DATABASE_URL": migrated}
    flask = [str(Path(sys.executable).with_name("flask")), "--app", "wsgi"]
    seeded = subprocess.run([*flask, "seed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    listed = subprocess.run([*flask, "tenants", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "\t" in line and not line.startswith("{")]  # not logs
    assert rows[0].split("\t") == ["slug", "id", "tier", "state", "admins"]
    assert [row.split("\t")[0] for row in rows[1:]] == list(DEMO_SLUGS)
    assert all(row.endswith("\t3 admins") for row in rows[1:])
    as_json = subprocess.run(
        [*flask, "tenants", "list", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    tenants = json.loads(next(line for line in as_json.stdout.splitlines() if line.startswith("[")))
    assert [t["slug"] for t in tenants] == list(DEMO_SLUGS)
    assert set(tenants[0]) == {"slug", "id", "tier", "state", "admins"} and tenants[0]["admins"] == 3
    refused = subprocess.run(
        [*flask, "tenants", "deactivate", "no-such-tenant"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "no-such-tenant" in refused.stderr


def test_operators_commands_without_the_owners_url_say_so_in_one_line(migrated, raw_db):
    env = {k: v for k, v in os.environ.items() if k != "TEST_MIGRATION_DATABASE_URL"}
    env.update({"APP_ENV": "testing", "TEST_DATABASE_URL": migrated})
    for command in (["seed"], ["tenants", "list"], ["tokens", "purge"], ["db", "upgrade"]):
        result = subprocess.run(
            [str(Path(sys.executable).with_name("flask")), "--app", "wsgi", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, (command, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "MIGRATION_DATABASE_URL" in errors[0], (command, result.stderr)
        assert "Traceback" not in result.stderr, command


def test_a_configuration_error_or_a_silent_database_is_one_line_and_exit_1(migrated):
    """What to fix, in one line, not a traceback (a closed port of 127.0.0.1
    stands for a database that does not answer)."""
    flask = [str(Path(sys.executable).with_name("flask")), "--app", "wsgi"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "APP_"))}
    cases = [
        ({"APP_ENV": "production"}, "is not set"),
        (
            {
                "APP_ENV": "testing",
                "TEST_DATABASE_URL": "postgresql://wafaa@127.0.0.1:9/wafaa",
                "TEST_MIGRATION_DATABASE_URL": "postgresql://wafaa@127.0.0.1:9/wafaa",
            },
            "the database does not answer",
        ),
    ]
    for extra, expected in cases:
        for command in (["tenants", "list"], ["admins", "unlock", "nobody@example.com"]):
            result = subprocess.run(
                [*flask, *command], cwd=ROOT, env={**base, **extra}, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 1, (command, result.stderr)
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and expected in errors[0], (command, result.stderr)
            assert "Traceback" not in result.stderr, command


def test_citus_distribute_on_plain_postgresql_changes_nothing(cli, raw_db):
    # Without the citus extension there is nothing to distribute, and it says so.
    before = raw_db.execute("SELECT conname FROM pg_constraint ORDER BY 1").fetchall()
    result = cli("citus", "distribute")
    assert result.exit_code == 0, result.output
    assert "not installed in this database: nothing to distribute" in result.output
    assert raw_db.execute("SELECT conname FROM pg_constraint ORDER BY 1").fetchall() == before
