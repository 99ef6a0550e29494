"""The three kinds of database role (wafaa.db_roles): created by the tooling from a
superuser URL, checked by production before it serves, reported by /health."""

from __future__ import annotations

import secrets

import pytest
import requests

from tests.servers import GunicornServer
from wafaa.db_roles import DEFAULT_OWNER, bootstrap, main, prepare, startup_problem, with_user

PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(48),
    "JWT_SECRET_KEY": secrets.token_urlsafe(48),
    "CORS_ORIGINS": '["https://app.example.com"]',
}


def test_the_service_role_passes_the_check_and_the_others_do_not(migrated, database_url, superuser_url):
    assert startup_problem(database_url) is None
    assert "is a superuser" in startup_problem(superuser_url)
    owner_problem = startup_problem(with_user(superuser_url, DEFAULT_OWNER))
    assert owner_problem.startswith(f"database role '{DEFAULT_OWNER}' owns ")
    # An unreachable database is no role problem: the service starts and answers 503.
    assert startup_problem("postgresql://postgres@127.0.0.1:1/wafaa_test", connect_timeout=1) is None


def test_setting_up_the_roles_again_changes_nothing(database_url, superuser_url, raw_db):
    before = raw_db.execute("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles ORDER BY rolname").fetchall()
    urls = bootstrap(superuser_url)
    assert urls.service == database_url
    assert raw_db.execute("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles ORDER BY rolname").fetchall() == before
    # A URL of an ordinary role is taken as set up already.
    assert prepare(database_url) is None


def test_the_command_prints_both_urls_for_a_shell(superuser_url, capsys):
    assert main(["db_roles", superuser_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ["DATABASE_URL", "MIGRATION_DATABASE_URL"]


@pytest.mark.gunicorn
@pytest.mark.parametrize("who", ["superuser", "owner"])
def test_production_refuses_to_start_as_a_superuser_or_the_owner(superuser_url, migrated, who):
    url = superuser_url if who == "superuser" else with_user(superuser_url, DEFAULT_OWNER)
    server = GunicornServer(workers=1, threads=1, env={**PRODUCTION, "DATABASE_URL": url})
    try:
        with pytest.raises(RuntimeError, match="gunicorn exited early") as failure:
            server.start()
    finally:
        server.__exit__(None, None, None)  # closes and removes its log
    refusal = [line for line in str(failure.value).splitlines() if line.startswith("refusing to start")]
    assert len(refusal) == 1
    assert "docs/isolation.md" in refusal[0] and ("superuser" in refusal[0] or "owns" in refusal[0])


@pytest.mark.gunicorn
def test_production_serves_as_the_service_role_and_health_says_so(migrated):
    with GunicornServer(workers=1, threads=1, env={**PRODUCTION, "DATABASE_URL": migrated}) as server:
        body = requests.get(f"{server.url}/health", timeout=10).json()
    assert body["checks"]["database_role"] == {"status": "ok"}


def test_health_reports_an_unsafe_role(make_app, superuser_url):
    app = make_app(TEST_DATABASE_URL=superuser_url)
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database_role"] == {"status": "unsafe"}
