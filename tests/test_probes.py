"""GET /livez and GET /readyz: what an orchestrator asks before it restarts a
process or sends it traffic. (With the database down: tests/test_faults.py.)"""

from __future__ import annotations

import pytest

from wafaa.readiness import code_heads


def test_liveness_is_ok_and_asks_nothing(client):
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_when_every_check_holds(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "database_role": "ok",
        "migrations": "ok",
        "row_level_security": "ok",
    }


@pytest.fixture
def revision(raw_db):
    """Set the database's recorded revision for one test, then put it back."""
    (current,) = raw_db.execute("SELECT version_num FROM alembic_version").fetchone()
    yield lambda value: raw_db.execute("UPDATE alembic_version SET version_num = %s", (value,))
    raw_db.execute("UPDATE alembic_version SET version_num = %s", (current,))


def test_not_ready_when_the_database_is_not_at_the_codes_head(client, revision):
    assert code_heads() == {"0008_distributable"}
    revision("0006_abuse_hardening")  # a deploy whose `flask db upgrade` has not run
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert response.get_json()["checks"]["migrations"] == {"status": "behind"}
    # /health is about the dependencies only, and stays as it was.
    assert client.get("/health").status_code == 200


def test_not_ready_when_a_tenant_table_lost_its_row_level_security(client, raw_db):
    raw_db.execute("ALTER TABLE tenant_admins NO FORCE ROW LEVEL SECURITY")
    try:
        response = client.get("/readyz")
    finally:
        raw_db.execute("ALTER TABLE tenant_admins FORCE ROW LEVEL SECURITY")
    assert response.status_code == 503
    assert response.get_json()["checks"]["row_level_security"] == {"status": "unsafe"}
    assert "tenant_admins" not in response.get_data(as_text=True)  # named in the log only


def test_probes_are_never_rate_limited(make_app):
    client = make_app(RATELIMIT_AUTHENTICATED="1/hour").test_client()
    for _ in range(5):
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200
