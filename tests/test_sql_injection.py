"""SQL-injection payloads in every string field, path and query parameter.

Each payload must be either refused with a 4xx or stored and returned as plain
data, and afterwards the other tenant's rows and the database schema must be
exactly as before.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support import error_of

PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE tenants; --",
    '"; DROP TABLE audit_logs; --',
    "1; DELETE FROM tenant_admins WHERE '1'='1",
    "' UNION SELECT id, email, password_hash, NULL FROM tenant_admins --",
    "admin'/*",
    "*/ OR 1=1 --",
    "%' OR 'x' LIKE '%",
    "$$; TRUNCATE tenants CASCADE; $$",
    "'); SELECT set_config('app.tenant_id', '00000000-0000-0000-0000-000000000000', false); --",
    "'; RESET ROLE; SELECT set_config('app.system', 'on', false); --",
    "'; SET ROLE postgres; UPDATE tenants SET name = 'pwned'; --",
    "1' AND pg_sleep(5) IS NULL --",
]


def _schema_snapshot(raw_db) -> list:
    """Tables, columns, constraints, policies and grants of the public schema."""
    return raw_db.execute(
        """
        SELECT 'column', table_name, column_name || ':' || data_type FROM information_schema.columns
            WHERE table_schema = 'public'
        UNION ALL SELECT 'constraint', conrelid::regclass::text, conname FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace
        UNION ALL SELECT 'policy', tablename, policyname || ':' || qual FROM pg_policies WHERE schemaname = 'public'
        UNION ALL SELECT 'rls', relname, relrowsecurity::text || relforcerowsecurity::text FROM pg_class
            WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
        UNION ALL SELECT 'grant', table_name, grantee || ':' || privilege_type
            FROM information_schema.role_table_grants WHERE table_schema = 'public'
        ORDER BY 1, 2, 3
        """
    ).fetchall()


def _tenant_rows(raw_db, tenant_id: uuid.UUID) -> list:
    return [
        raw_db.execute("SELECT * FROM tenants WHERE id = %s", (tenant_id,)).fetchall(),
        raw_db.execute("SELECT * FROM tenant_admins WHERE tenant_id = %s ORDER BY id", (tenant_id,)).fetchall(),
        raw_db.execute("SELECT * FROM auth_sessions WHERE tenant_id = %s ORDER BY id", (tenant_id,)).fetchall(),
        raw_db.execute("SELECT * FROM audit_logs WHERE tenant_id = %s ORDER BY id", (tenant_id,)).fetchall(),
    ]


@pytest.fixture
def setting(api, factory, raw_db):
    """Tenant A (the attacker's) and tenant B (the bystander), B's rows and the
    schema recorded before the attack and compared after it."""
    a, b = factory.world(), factory.world()
    api.login(b.owner)  # B has a live session, too
    token = api.login(a.owner)["access_token"]
    before = (_tenant_rows(raw_db, b.tenant.id), _schema_snapshot(raw_db))
    yield a, b, token
    assert _tenant_rows(raw_db, b.tenant.id) == before[0], "tenant B's rows changed"
    assert _schema_snapshot(raw_db) == before[1], "the schema changed"
    assert raw_db.execute("SELECT count(*) FROM tenants").fetchone()[0] == 2


def _assert_refused_or_plain(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        error_of(response)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_login_fields(api, setting, payload):
    a, b, token = setting
    for body in ({"email": payload, "password": payload}, {"email": a.owner.email, "password": payload}):
        response = api.post("/api/v1/auth/login", json=body)
        assert response.status_code in (401, 422)
        error_of(response)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_tenant_name_and_settings_are_stored_as_plain_data(api, setting, payload):
    a, b, token = setting
    body = {"name": payload, "settings": {payload: payload, "nested": {"value": payload}}}
    response = api.patch("/api/v1/tenants/me", token=token, json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == payload
    assert response.get_json()["settings"] == {payload: payload, "nested": {"value": payload}}
    assert api.get("/api/v1/tenants/me", token=token).get_json()["name"] == payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_admin_fields(api, setting, payload):
    a, b, token = setting
    # full_name is free text: stored verbatim. email and role: refused.
    created = api.post(
        "/api/v1/tenants/me/admins",
        token=token,
        json={
            "email": f"new-{uuid.uuid4().hex[:8]}@a.test",
            "full_name": payload,
            "role": "viewer",
            "password": payload[:60] + "-long-enough",
        },
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["full_name"] == payload.strip()
    for field in ("email", "role"):
        body = {
            "email": "x@a.test",
            "full_name": "X",
            "role": "viewer",
            "password": "long enough password",
            field: payload,
        }
        refused = api.post("/api/v1/tenants/me/admins", token=token, json=body)
        assert refused.status_code == 422
        error_of(refused)
    changed = api.patch(
        f"/api/v1/tenants/me/admins/{created.get_json()['id']}", token=token, json={"full_name": payload}
    )
    assert changed.status_code == 200 and changed.get_json()["full_name"] == payload.strip()
    _assert_refused_or_plain(
        api.patch(f"/api/v1/tenants/me/admins/{created.get_json()['id']}", token=token, json={"role": payload})
    )


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_paths(api, setting, payload):
    a, b, token = setting
    for method, path in (
        ("GET", "/api/v1/tenants/me/admins/{}"),
        ("PATCH", "/api/v1/tenants/me/admins/{}"),
        ("POST", "/api/v1/tenants/me/admins/{}/deactivate"),
        ("DELETE", "/api/v1/auth/sessions/{}"),
    ):
        response = api.request(method, path.format(payload), token=token, json={} if method == "PATCH" else None)
        assert response.status_code == 404
        error_of(response)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_query_parameters(api, setting, payload):
    a, b, token = setting
    for path, name in (
        ("/api/v1/tenants/me/admins", "role"),
        ("/api/v1/tenants/me/admins", "is_active"),
        ("/api/v1/tenants/me/admins", "page"),
        ("/api/v1/tenants/me/audit-logs", "action"),
        ("/api/v1/tenants/me/audit-logs", "user_id"),
        ("/api/v1/tenants/me/audit-logs", "since"),
    ):
        response = api.get(path, token=token, query_string={name: payload})
        assert response.status_code == 422, (name, response.get_json())
        error_of(response)
    # resource_type is free text: a filter that simply matches nothing.
    response = api.get("/api/v1/tenants/me/audit-logs", token=token, query_string={"resource_type": payload[:50]})
    assert response.status_code == 200
    assert response.get_json()["items"] == []


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_tokens_and_headers(api, setting, payload):
    a, b, token = setting
    refresh = api.post("/api/v1/auth/refresh", json={"refresh_token": payload})
    assert refresh.status_code == 401
    assert api.get("/api/v1/tenants/me", headers={"Authorization": f"Bearer {payload}"}).status_code == 401
    response = api.get("/api/v1/tenants/me", token=token, headers={"X-Request-ID": payload, "X-Tenant-ID": payload})
    assert response.status_code == 200
    assert response.get_json()["id"] == str(a.tenant.id)
    assert response.headers["X-Request-ID"] != payload
