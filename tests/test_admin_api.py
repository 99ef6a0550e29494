"""The tenant's admins: /api/v1/tenants/me/admins and /admins/<id>.

Listing (paginated, filtered, never a password hash), creating (password rules,
role rules, globally unique emails without revealing other tenants), reading,
changing and deactivating, with the rule that a tenant always keeps an active
owner, and with role and state changes taking effect on the very next request.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import bcrypt
import pytest

from tests.support import PASSWORD, AdminRef, error_of

ADMINS = "/api/v1/tenants/me/admins"
ADMIN_FIELDS = {"id", "email", "full_name", "role", "is_active", "last_login", "created_at", "updated_at"}
PAGE_FIELDS = {"items", "page", "page_size", "total", "pages"}


def admin_row(raw_db, admin_id) -> dict | None:
    row = raw_db.execute("SELECT row_to_json(t) FROM tenant_admins t WHERE id = %s", (admin_id,)).fetchone()
    return row[0] if row else None


def admin_count(raw_db, tenant_id) -> int:
    return raw_db.execute("SELECT count(*) FROM tenant_admins WHERE tenant_id = %s", (tenant_id,)).fetchone()[0]


def new_admin(role: str = "viewer", **overrides) -> dict:
    return {
        "email": f"new-{uuid.uuid4().hex[:10]}@example.test",
        "full_name": "New Colleague",
        "role": role,
        "password": PASSWORD,
        **overrides,
    }


def assert_no_secrets(response) -> None:
    text = response.get_data(as_text=True)
    assert "$2b$" not in text and "$2a$" not in text
    assert "password_hash" not in text
    assert "password" not in text.lower() or response.status_code >= 400


# --- list ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
def test_any_role_lists_its_admins_without_password_hashes(api, factory, role):
    world = factory.world()
    other = factory.world()
    response = api.get(ADMINS, world.by_role(role))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == PAGE_FIELDS
    assert (body["page"], body["page_size"], body["total"], body["pages"]) == (1, 20, 3, 1)
    assert all(set(item) == ADMIN_FIELDS for item in body["items"])
    assert {item["id"] for item in body["items"]} == {str(world.owner.id), str(world.admin.id), str(world.viewer.id)}
    assert str(other.owner.id) not in response.get_data(as_text=True)
    assert_no_secrets(response)


def test_admins_are_paginated_in_creation_order(api, factory, raw_db):
    world = factory.world()
    for _ in range(22):
        factory.admin(world.tenant, "viewer")
    expected = [
        str(row[0])
        for row in raw_db.execute(
            "SELECT id FROM tenant_admins WHERE tenant_id = %s ORDER BY created_at, id", (world.tenant.id,)
        )
    ]
    assert len(expected) == 25
    assert expected[:3] == [str(world.owner.id), str(world.admin.id), str(world.viewer.id)]
    token = api.login(world.viewer)["access_token"]
    seen = []
    for page in (1, 2, 3):
        body = api.get(ADMINS, token=token, query_string={"page": page, "page_size": 10}).get_json()
        assert (body["page"], body["page_size"], body["total"], body["pages"]) == (page, 10, 25, 3)
        assert len(body["items"]) == (10 if page < 3 else 5)
        seen += [item["id"] for item in body["items"]]
    assert seen == expected
    past_the_end = api.get(ADMINS, token=token, query_string={"page": 4, "page_size": 10}).get_json()
    assert past_the_end["items"] == [] and past_the_end["total"] == 25
    everything = api.get(ADMINS, token=token, query_string={"page_size": 100}).get_json()
    assert [item["id"] for item in everything["items"]] == expected


@pytest.mark.parametrize(
    "query",
    [{"page_size": 101}, {"page_size": 0}, {"page_size": -1}, {"page_size": "ten"}, {"page": 0}, {"role": "boss"}],
    ids=lambda q: "-".join(f"{k}={v}" for k, v in q.items()),
)
def test_bad_paging_or_filter_values_are_refused(api, factory, query):
    world = factory.world()
    response = api.get(ADMINS, world.owner, query_string=query)
    assert response.status_code == 422
    assert set(error_of(response)["details"]["query"]) == set(query)


def test_admins_are_filtered_by_role_and_active_state(api, factory):
    world = factory.world()
    gone_viewer = factory.admin(world.tenant, "viewer", is_active=False)
    gone_admin = factory.admin(world.tenant, "admin", is_active=False)
    token = api.login(world.admin)["access_token"]

    def ids(**query):
        body = api.get(ADMINS, token=token, query_string=query).get_json()
        assert body["total"] == len(body["items"])
        return {item["id"] for item in body["items"]}

    assert ids(role="viewer") == {str(world.viewer.id), str(gone_viewer.id)}
    assert ids(role="owner") == {str(world.owner.id)}
    assert ids(is_active="false") == {str(gone_viewer.id), str(gone_admin.id)}
    assert ids(is_active="true") == {str(world.owner.id), str(world.admin.id), str(world.viewer.id)}
    assert ids(role="admin", is_active="false") == {str(gone_admin.id)}
    assert ids(role="owner", is_active="false") == set()


# --- create --------------------------------------------------------------------------


ALLOWED_CREATIONS = [
    ("owner", "owner"),
    ("owner", "admin"),
    ("owner", "viewer"),
    ("admin", "admin"),
    ("admin", "viewer"),
]
FORBIDDEN_CREATIONS = [("admin", "owner"), ("viewer", "viewer"), ("viewer", "admin"), ("viewer", "owner")]


@pytest.mark.parametrize(("actor", "role"), ALLOWED_CREATIONS)
def test_owner_creates_any_role_and_admin_creates_admins_and_viewers(api, factory, raw_db, actor, role):
    world = factory.world()
    body = new_admin(role, email="  New.Person+Tag@Example.COM ", full_name="  Layla Haddad ")
    response = api.post(ADMINS, world.by_role(actor), json=body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert set(created) == ADMIN_FIELDS
    assert created["email"] == "new.person+tag@example.com"
    assert (created["full_name"], created["role"], created["is_active"]) == ("Layla Haddad", role, True)
    assert_no_secrets(response)
    # Stored trimmed and lower-case, in the caller's tenant, with a bcrypt hash of the password.
    row = admin_row(raw_db, created["id"])
    assert row["email"] == "new.person+tag@example.com"
    assert row["tenant_id"] == str(world.tenant.id)
    assert bcrypt.checkpw(PASSWORD.encode(), row["password_hash"].encode())
    # Location points at the new admin.
    location = urlsplit(response.headers["Location"]).path
    assert location == f"{ADMINS}/{created['id']}"
    fetched = api.get(location, world.viewer)
    assert fetched.status_code == 200
    assert fetched.get_json() == created
    # And the new admin can log in with any spelling of the email.
    api.login(AdminRef(uuid.UUID(created["id"]), world.tenant.id, " NEW.PERSON+TAG@example.com", role))


@pytest.mark.parametrize(("actor", "role"), FORBIDDEN_CREATIONS)
def test_creating_beyond_ones_role_is_forbidden(api, factory, raw_db, actor, role):
    world = factory.world()
    body = new_admin(role)
    response = api.post(ADMINS, world.by_role(actor), json=body)
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    assert admin_count(raw_db, world.tenant.id) == 3
    assert raw_db.execute("SELECT count(*) FROM tenant_admins WHERE email = %s", (body["email"],)).fetchone() == (0,)


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        pytest.param("elevenchars", False, id="11-chars"),
        pytest.param("twelve chars", True, id="12-chars"),
        pytest.param("é" * 36, True, id="72-bytes-of-2-byte-chars"),  # 36 characters
        pytest.param("😀" * 18, True, id="72-bytes-of-emoji"),  # 18 characters
        pytest.param("a" * 72, True, id="72-ascii"),
        pytest.param("é" * 36 + "a", False, id="73-bytes"),
        pytest.param("a" * 73, False, id="73-ascii"),
        pytest.param("😀" * 18 + "a", False, id="73-bytes-with-emoji"),
    ],
)
def test_password_length_is_12_characters_to_72_bytes(api, factory, raw_db, password, accepted):
    world = factory.world()
    body = new_admin(password=password)
    response = api.post(ADMINS, world.owner, json=body)
    if accepted:
        assert response.status_code == 201, response.get_json()
        # The whole password was hashed: it logs in, and a truncated one does not.
        created = AdminRef(uuid.UUID(response.get_json()["id"]), world.tenant.id, body["email"], "viewer", password)
        api.login(created)
        refused = api.client.post("/api/v1/auth/login", json={"email": body["email"], "password": password[:-1]})
        assert refused.status_code == 401
    else:
        assert response.status_code == 422
        message = " ".join(error_of(response)["details"]["json"]["password"])
        if len(password) < 12:
            assert "12" in message
        else:
            assert "72" in message and "bytes" in message
        assert admin_count(raw_db, world.tenant.id) == 3
    assert password not in response.get_data(as_text=True)


def test_an_email_used_in_another_tenant_is_a_409_that_reveals_nothing_of_it(api, factory, raw_db):
    world = factory.world()
    other = factory.world()
    taken = factory.admin(other.tenant, "viewer", email="samir@shared-domain.test")
    for spelling in ("samir@shared-domain.test", "  SAMIR@Shared-Domain.TEST  "):
        response = api.post(ADMINS, world.owner, json=new_admin("viewer", email=spelling))
        assert response.status_code == 409
        error = error_of(response)
        assert error["code"] == "conflict"
        text = response.get_data(as_text=True)
        for secret in (str(other.tenant.id), other.tenant.slug, other.tenant.name, str(taken.id), str(other.owner.id)):
            assert secret not in text
    assert admin_count(raw_db, world.tenant.id) == 3
    assert admin_count(raw_db, other.tenant.id) == 4


def test_an_email_used_in_the_same_tenant_is_a_409(api, factory, raw_db):
    world = factory.world()
    response = api.post(ADMINS, world.admin, json=new_admin("viewer", email=world.viewer.email.upper()))
    assert response.status_code == 409
    assert admin_count(raw_db, world.tenant.id) == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "6d0f1a52-0000-4000-8000-000000000001"),
        ("tenant_id", "6d0f1a52-0000-4000-8000-000000000002"),
        ("password_hash", "$2b$04$abcdefghijklmnopqrstuu5Ep0tq0n3fQ1J0ZVZpY0PWxHqNuNz8G"),
        ("is_active", False),
        ("last_login", "2024-01-01T00:00:00+00:00"),
        ("created_at", "2024-01-01T00:00:00+00:00"),
        ("unknown", 1),
    ],
)
def test_unknown_or_server_owned_fields_are_refused_on_create(api, factory, raw_db, field, value):
    world = factory.world()
    response = api.post(ADMINS, world.owner, json=new_admin("viewer", **{field: value}))
    assert response.status_code == 422
    assert field in error_of(response)["details"]["json"]
    assert admin_count(raw_db, world.tenant.id) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"full_name": "No Email", "role": "viewer", "password": PASSWORD},
        new_admin(email="not-an-email"),
        new_admin(role="superuser"),
        new_admin(full_name="   "),
        new_admin(full_name="x" * 256),
        {"email": "a@b.test", "full_name": "No Password", "role": "viewer"},
    ],
    ids=["no-email", "bad-email", "bad-role", "blank-name", "long-name", "no-password"],
)
def test_invalid_admin_bodies_are_refused(api, factory, raw_db, body):
    world = factory.world()
    response = api.post(ADMINS, world.owner, json=body)
    assert response.status_code == 422
    assert admin_count(raw_db, world.tenant.id) == 3


# --- one admin -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
def test_any_role_reads_one_admin(api, factory, role):
    world = factory.world()
    response = api.get(f"{ADMINS}/{world.owner.id}", world.by_role(role))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == ADMIN_FIELDS
    assert (body["id"], body["email"], body["role"]) == (str(world.owner.id), world.owner.email, "owner")
    assert_no_secrets(response)


def _admin_request(api, method: str, admin_id, *args, **kwargs):
    """`method` on an admin; DEACTIVATE is POST .../deactivate (admins are never deleted)."""
    if method == "DEACTIVATE":
        return api.post(f"{ADMINS}/{admin_id}/deactivate", *args, **kwargs)
    return api.request(method, f"{ADMINS}/{admin_id}", *args, **kwargs)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DEACTIVATE"])
def test_unknown_or_malformed_admin_ids_are_404(api, factory, method):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    body = {"full_name": "x"} if method == "PATCH" else None
    for target in (uuid.uuid4(), "not-a-uuid", "1"):
        response = _admin_request(api, method, target, token=token, json=body)
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"


def test_owner_changes_name_role_and_active_state(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    path = f"{ADMINS}/{world.viewer.id}"
    response = api.patch(path, token=token, json={"full_name": "  Nour Saleh ", "role": "admin"})
    assert response.status_code == 200
    assert (response.get_json()["full_name"], response.get_json()["role"]) == ("Nour Saleh", "admin")
    row = admin_row(raw_db, world.viewer.id)
    assert (row["full_name"], row["role"], row["is_active"]) == ("Nour Saleh", "admin", True)
    response = api.patch(path, token=token, json={"is_active": False})
    assert response.status_code == 200 and response.get_json()["is_active"] is False
    assert admin_row(raw_db, world.viewer.id)["is_active"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "changed@example.test"),
        ("password", "a brand new password"),
        ("password_hash", "$2b$04$x"),
        ("tenant_id", "6d0f1a52-0000-4000-8000-000000000002"),
        ("id", "6d0f1a52-0000-4000-8000-000000000003"),
        ("last_login", "2024-01-01T00:00:00+00:00"),
        ("full_name", "   "),
        # Control characters: a terminal escape, a newline, DEL.
        ("full_name", "\x1b[31mRed Admin"),
        ("full_name", "Two\nLines"),
        ("full_name", "Del\x7fete"),
        ("role", "superuser"),
        ("is_active", "perhaps"),
        # JSON booleans only: "false" or 0 would otherwise have deactivated.
        ("is_active", "false"),
        ("is_active", 0),
    ],
)
def test_invalid_admin_changes_are_refused_and_nothing_changes(api, factory, raw_db, field, value):
    world = factory.world()
    before = admin_row(raw_db, world.viewer.id)
    response = api.patch(f"{ADMINS}/{world.viewer.id}", world.owner, json={field: value})
    assert response.status_code == 422
    assert field in error_of(response)["details"]["json"]
    assert admin_row(raw_db, world.viewer.id) == before


# Who may do what to whom. The target is never the actor; "owner" targets are a
# second owner, so the last-owner rule stays out of the way.
CHANGES = {
    "rename": ("PATCH", {"full_name": "Renamed Person"}),
    "to-viewer": ("PATCH", {"role": "viewer"}),
    "to-admin": ("PATCH", {"role": "admin"}),
    "to-owner": ("PATCH", {"role": "owner"}),
    "deactivate": ("PATCH", {"is_active": False}),
    "deactivate-post": ("DEACTIVATE", None),
}


def _expected(actor: str, target: str, change: str) -> int:
    if actor == "viewer":
        return 403
    if actor == "admin" and (target == "owner" or change == "to-owner"):
        return 403
    return 200


MATRIX = [
    pytest.param(actor, target, change, _expected(actor, target, change), id=f"{actor}-{change}-{target}")
    for actor in ("owner", "admin", "viewer")
    for target in ("owner", "admin", "viewer")
    for change in CHANGES
]


@pytest.mark.parametrize(("actor", "target", "change", "status"), MATRIX)
def test_role_rules_for_changing_and_deactivating_admins(api, factory, raw_db, actor, target, change, status):
    world = factory.world()
    factory.admin(world.tenant, "owner")  # a second owner, so no change below trips the last-owner rule
    victim = factory.admin(world.tenant, target)
    before = admin_row(raw_db, victim.id)
    method, body = CHANGES[change]
    response = _admin_request(api, method, victim.id, world.by_role(actor), json=body)
    assert response.status_code == status, response.get_json()
    after = admin_row(raw_db, victim.id)
    if status == 403:
        assert error_of(response)["code"] == "forbidden"
        assert after == before
    else:
        expected = {**before, **(body or {"is_active": False})}
        assert {k: after[k] for k in ("full_name", "role", "is_active")} == {
            k: expected[k] for k in ("full_name", "role", "is_active")
        }
        assert response.get_json()["id"] == str(victim.id)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("PATCH", {"role": "admin"}),
        ("PATCH", {"role": "viewer"}),
        ("PATCH", {"is_active": False}),
        ("DEACTIVATE", None),
    ],
    ids=["demote-to-admin", "demote-to-viewer", "deactivate", "deactivate-post"],
)
def test_the_last_active_owner_cannot_be_demoted_or_deactivated(api, factory, raw_db, method, body):
    world = factory.world()
    factory.admin(world.tenant, "owner", is_active=False)  # an inactive owner does not count
    token = api.login(world.owner)["access_token"]
    before = admin_row(raw_db, world.owner.id)
    response = _admin_request(api, method, world.owner.id, token=token, json=body)
    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"
    assert admin_row(raw_db, world.owner.id) == before


def test_with_two_owners_one_may_be_demoted_but_then_not_the_other(api, factory, raw_db):
    world = factory.world()
    second = factory.admin(world.tenant, "owner")
    token = api.login(world.owner)["access_token"]
    response = api.patch(f"{ADMINS}/{second.id}", token=token, json={"role": "admin"})
    assert response.status_code == 200
    assert admin_row(raw_db, second.id)["role"] == "admin"
    response = api.patch(f"{ADMINS}/{world.owner.id}", token=token, json={"role": "admin"})
    assert response.status_code == 409
    assert admin_row(raw_db, world.owner.id)["role"] == "owner"


def test_an_owner_may_step_down_while_another_owner_remains(api, factory, raw_db):
    world = factory.world()
    factory.admin(world.tenant, "owner")
    response = api.patch(f"{ADMINS}/{world.owner.id}", world.owner, json={"role": "viewer"})
    assert response.status_code == 200
    assert admin_row(raw_db, world.owner.id)["role"] == "viewer"


# --- changes take effect on the next request ----------------------------------------------


def test_a_demotion_takes_effect_on_the_next_request_with_the_same_token(api, factory):
    world = factory.world()
    token = api.login(world.admin)["access_token"]
    assert api.patch("/api/v1/tenants/me", token=token, json={"name": "Still Allowed"}).status_code == 200
    assert api.patch(f"{ADMINS}/{world.admin.id}", world.owner, json={"role": "viewer"}).status_code == 200
    assert api.patch("/api/v1/tenants/me", token=token, json={"name": "Not Any More"}).status_code == 403
    assert api.get("/api/v1/tenants/me/audit-logs", token=token).status_code == 403
    assert api.post(ADMINS, token=token, json=new_admin("viewer")).status_code == 403
    assert api.get("/api/v1/tenants/me", token=token).status_code == 200


def test_a_promotion_takes_effect_on_the_next_request_with_the_same_token(api, factory):
    world = factory.world()
    token = api.login(world.viewer)["access_token"]
    assert api.patch("/api/v1/tenants/me", token=token, json={"name": "Viewer Try"}).status_code == 403
    assert api.patch(f"{ADMINS}/{world.viewer.id}", world.owner, json={"role": "admin"}).status_code == 200
    assert api.patch("/api/v1/tenants/me", token=token, json={"name": "Now Allowed"}).status_code == 200


@pytest.mark.parametrize(
    ("method", "body"), [("DEACTIVATE", None), ("PATCH", {"is_active": False})], ids=["post-deactivate", "patch"]
)
def test_deactivation_keeps_the_row_revokes_sessions_and_keeps_audit_references(api, factory, raw_db, method, body):
    world = factory.world()
    tokens = [api.login(world.admin), api.login(world.admin)]
    # Something the admin did, so audit rows name them as the actor.
    assert (
        api.patch("/api/v1/tenants/me", token=tokens[0]["access_token"], json={"name": "By Admin"}).status_code == 200
    )
    acted = raw_db.execute("SELECT count(*) FROM audit_logs WHERE user_id = %s", (world.admin.id,)).fetchone()[0]
    assert acted >= 3  # two logins and the change

    response = _admin_request(api, method, world.admin.id, world.owner, json=body)
    assert response.status_code in (200, 204)
    if response.status_code == 200:
        assert response.get_json()["is_active"] is False

    row = admin_row(raw_db, world.admin.id)
    assert row is not None and row["is_active"] is False
    sessions = raw_db.execute(
        "SELECT revoked_at IS NOT NULL, revoked_reason FROM auth_sessions WHERE admin_id = %s", (world.admin.id,)
    ).fetchall()
    assert len(sessions) == 2 and all(revoked for revoked, _ in sessions)
    still = raw_db.execute("SELECT count(*) FROM audit_logs WHERE user_id = %s", (world.admin.id,)).fetchone()[0]
    assert still == acted
    # (That exactly one row records the deactivation is tested in test_audit_trail.py.)
    recorded = raw_db.execute(
        "SELECT count(*) FROM audit_logs WHERE resource_id = %s AND action = 'admin.deactivated'",
        (str(world.admin.id),),
    ).fetchone()[0]
    assert recorded >= 1
    for pair in tokens:
        denied = api.get("/api/v1/tenants/me", token=pair["access_token"])
        assert denied.status_code == 401
        assert error_of(denied)["code"] == "token_revoked"
        refused = api.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refused.status_code == 401
    login = api.client.post("/api/v1/auth/login", json={"email": world.admin.email, "password": PASSWORD})
    assert login.status_code == 401
    # The deactivated admin is still listed (inactive) and readable.
    assert api.get(f"{ADMINS}/{world.admin.id}", world.viewer).get_json()["is_active"] is False


def test_a_reactivated_admin_logs_in_again_but_old_sessions_stay_revoked(api, factory):
    world = factory.world()
    old = api.login(world.viewer)["access_token"]
    owner = api.login(world.owner)["access_token"]
    assert api.post(f"{ADMINS}/{world.viewer.id}/deactivate", token=owner).status_code in (200, 204)
    response = api.patch(f"{ADMINS}/{world.viewer.id}", token=owner, json={"is_active": True})
    assert response.status_code == 200 and response.get_json()["is_active"] is True
    assert api.get("/api/v1/tenants/me", token=old).status_code == 401
    fresh = api.login(world.viewer)["access_token"]
    assert api.get("/api/v1/tenants/me", token=fresh).status_code == 200
