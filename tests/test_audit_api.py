"""GET /api/v1/tenants/me/audit-logs: the tenant's audit log, for owners and admins.

Newest first, filtered by action, resource type, actor and time window, paginated;
only the caller's tenant; and nothing in the API can change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone

import pytest

from tests.support import PASSWORD, TenantWorld, error_of

ME = "/api/v1/tenants/me"
LOGS = f"{ME}/audit-logs"
LOG_FIELDS = {"id", "action", "resource_type", "resource_id", "user_id", "details", "ip_address", "created_at"}


@dataclass
class History:
    world: TenantWorld
    other: TenantWorld
    token: str  # the owner's


@pytest.fixture
def history(api, factory) -> History:
    """Some activity in two tenants: logins, tenant and admin changes."""
    world, other = factory.world(), factory.world()
    owner = api.login(world.owner)["access_token"]
    admin = api.login(world.admin)["access_token"]
    assert api.patch(ME, token=owner, json={"name": "First Rename"}).status_code == 200
    created = api.post(
        f"{ME}/admins",
        token=admin,
        json={"email": "new.viewer@example.test", "full_name": "New Viewer", "role": "viewer", "password": PASSWORD},
    )
    assert created.status_code == 201
    assert api.post(f"{ME}/admins/{created.get_json()['id']}/deactivate", token=owner).status_code in (200, 204)
    assert api.patch(ME, token=admin, json={"settings": {"lang": "ar"}}).status_code == 200
    other_token = api.login(other.owner)["access_token"]
    assert api.patch(ME, token=other_token, json={"name": "Other Rename"}).status_code == 200
    return History(world, other, owner)


def expected_ids(raw_db, tenant_id, where: str = "TRUE", params: tuple = ()) -> list[str]:
    """The tenant's audit row ids, newest first, straight from the table."""
    rows = raw_db.execute(
        f"SELECT id FROM audit_logs WHERE tenant_id = %s AND ({where}) ORDER BY created_at DESC, id DESC",
        (tenant_id, *params),
    )
    return [str(row[0]) for row in rows]


def all_ids(api, token: str, **query) -> list[str]:
    ids, page = [], 1
    while True:
        response = api.get(LOGS, token=token, query_string={**query, "page": page, "page_size": 100})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        ids += [item["id"] for item in body["items"]]
        if page >= body["pages"]:
            assert len(ids) == body["total"]
            return ids
        page += 1


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_read_their_audit_log_newest_first(api, raw_db, history, role):
    token = api.login(history.world.by_role(role))["access_token"]
    response = api.get(LOGS, token=token, query_string={"page_size": 100})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"items", "page", "page_size", "total", "pages", "next_cursor", "previous_cursor"}
    assert all(set(item) == LOG_FIELDS for item in body["items"])
    expected = expected_ids(raw_db, history.world.tenant.id)
    assert [item["id"] for item in body["items"]] == expected
    assert body["total"] == len(expected)
    stamps = [item["created_at"] for item in body["items"]]
    assert stamps == sorted(stamps, reverse=True)
    # Nothing of the other tenant.
    text = response.get_data(as_text=True)
    for secret in (str(history.other.tenant.id), str(history.other.owner.id), "Other Rename"):
        assert secret not in text


def test_viewers_cannot_read_the_audit_log(api, history):
    response = api.get(LOGS, history.world.viewer)
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    assert "items" not in response.get_json()


def test_the_audit_log_needs_a_token(api, history):
    assert api.get(LOGS).status_code == 401


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ({"action": "tenant.updated"}, "action = 'tenant.updated'"),
        ({"action": "admin.created"}, "action = 'admin.created'"),
        ({"action": "auth.login"}, "action = 'auth.login'"),
        ({"action": "auth.refresh_reuse_detected"}, "action = 'auth.refresh_reuse_detected'"),
        ({"resource_type": "admin"}, "resource_type = 'admin'"),
        (
            {"resource_type": "tenant", "action": "tenant.updated"},
            "resource_type = 'tenant' AND action = 'tenant.updated'",
        ),
        ({"resource_type": "nothing-like-this"}, "FALSE"),
    ],
    ids=lambda v: str(v),
)
def test_audit_log_filters_by_action_and_resource_type(api, raw_db, history, query, where):
    expected = expected_ids(raw_db, history.world.tenant.id, where)
    assert all_ids(api, history.token, **query) == expected


def test_audit_log_filters_by_actor(api, raw_db, history):
    for admin in (history.world.owner, history.world.admin, history.world.viewer):
        expected = expected_ids(raw_db, history.world.tenant.id, "user_id = %s", (admin.id,))
        assert all_ids(api, history.token, user_id=str(admin.id)) == expected
    assert expected_ids(raw_db, history.world.tenant.id, "user_id = %s", (history.world.admin.id,))


def test_audit_log_filters_by_time_window(api, raw_db, history):
    stamps = [
        row[0]
        for row in raw_db.execute(
            "SELECT created_at FROM audit_logs WHERE tenant_id = %s ORDER BY created_at", (history.world.tenant.id,)
        )
    ]
    assert len(set(stamps)) >= 4
    middle, later = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
    tenant = history.world.tenant.id
    # since is inclusive, until exclusive.
    assert all_ids(api, history.token, since=middle.isoformat()) == expected_ids(
        raw_db, tenant, "created_at >= %s", (middle,)
    )
    assert all_ids(api, history.token, until=later.isoformat()) == expected_ids(
        raw_db, tenant, "created_at < %s", (later,)
    )
    window = all_ids(api, history.token, since=middle.isoformat(), until=later.isoformat())
    assert window == expected_ids(raw_db, tenant, "created_at >= %s AND created_at < %s", (middle, later))
    assert 0 < len(window) < len(stamps)
    # The same instant in another zone means the same thing.
    shifted = middle.astimezone(timezone(timedelta(hours=3))).isoformat()
    assert all_ids(api, history.token, since=shifted) == expected_ids(raw_db, tenant, "created_at >= %s", (middle,))


def test_audit_log_is_paginated(api, raw_db, history):
    expected = expected_ids(raw_db, history.world.tenant.id)
    assert len(expected) >= 5
    seen = []
    pages = -(-len(expected) // 2)
    for page in range(1, pages + 1):
        body = api.get(LOGS, token=history.token, query_string={"page": page, "page_size": 2}).get_json()
        assert (body["page"], body["page_size"], body["total"], body["pages"]) == (page, 2, len(expected), pages)
        seen += [item["id"] for item in body["items"]]
    assert seen == expected
    beyond = api.get(LOGS, token=history.token, query_string={"page": pages + 1, "page_size": 2}).get_json()
    assert beyond["items"] == []


def test_cursor_pages_do_not_shift_while_entries_are_added(api, raw_db, history):
    """Offset pages shift when an entry arrives between two requests (one shown
    twice); `after` the previous page's last entry does not."""
    expected = expected_ids(raw_db, history.world.tenant.id)
    first = api.get(LOGS, token=history.token, query_string={"page_size": 2}).get_json()
    assert [item["id"] for item in first["items"]] == expected[:2]
    # Activity between the two requests: new entries at the top of the log.
    assert api.patch(ME, token=history.token, json={"name": "Renamed Meanwhile"}).status_code == 200
    shifted = api.get(LOGS, token=history.token, query_string={"page": 2, "page_size": 2}).get_json()
    assert shifted["items"][0]["id"] == expected[1]  # the offset page repeats an entry
    seen, cursor = [item["id"] for item in first["items"]], first["next_cursor"]
    while cursor:
        body = api.get(LOGS, token=history.token, query_string={"after": cursor, "page_size": 2}).get_json()
        assert body["page"] is None and body["pages"] is None
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
    assert seen == expected  # every entry once, in order, none of the new one
    # And the new entries are what comes `before` the first page.
    newer = api.get(LOGS, token=history.token, query_string={"before": first["previous_cursor"]}).get_json()
    assert [item["id"] for item in newer["items"]] == expected_ids(raw_db, history.world.tenant.id)[:1]
    assert newer["items"][0]["action"] == "tenant.updated"


A_CURSOR = "1767225600000000.00000000000040008000000000000000"  # 2026-01-01, an id


@pytest.mark.parametrize(
    "query",
    [
        {"after": "not-a-cursor"},
        {"after": "1767225600000000"},  # no id
        {"after": "1767225600000000.0000000000004000800000000000000"},  # a digit short
        {"after": "-1.00000000000040008000000000000000"},
        {"after": "1767225600000000.00000000000040008000000000000000 "},
        {"after": "eyJ0IjoiMjAyNi0wMS0wMVQwMDowMDowMCswMDowMCJ9"},  # the old base64 JSON form
        {"action": "tenant.exploded"},
        {"action": "TENANT.UPDATED"},
        {"action": ""},
        {"user_id": "not-a-uuid"},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no zone: ambiguous
        {"page_size": 101},
        {"page_size": 0},
        {"page": 0},
    ],
    ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()),
)
def test_invalid_audit_log_queries_are_refused(api, history, query):
    response = api.get(LOGS, token=history.token, query_string=query)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"
    assert set(error_of(response)["details"]["query"]) <= set(query)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_no_endpoint_changes_the_audit_log(api, raw_db, history, method):
    before = raw_db.execute("SELECT row_to_json(t)::text FROM audit_logs t ORDER BY id").fetchall()
    row_id = expected_ids(raw_db, history.world.tenant.id)[0]
    response = api.request(method, LOGS, token=history.token, json={"action": "tampered"})
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
    one = api.request(method, f"{LOGS}/{row_id}", token=history.token, json={"action": "tampered"})
    assert one.status_code in (404, 405)
    after = raw_db.execute("SELECT row_to_json(t)::text FROM audit_logs t ORDER BY id").fetchall()
    assert after == before


def test_audit_rows_describe_the_change_and_the_actor(api, raw_db, history):
    body = api.get(LOGS, token=history.token, query_string={"action": "tenant.updated"}).get_json()
    renamed = [item for item in body["items"] if "name" in item["details"].get("changes", {})]
    assert renamed, "the rename is in the log"
    item = renamed[0]
    assert (item["resource_type"], item["resource_id"]) == ("tenant", str(history.world.tenant.id))
    assert item["user_id"] == str(history.world.owner.id)
    assert item["details"]["changes"]["name"]["after"] == "First Rename"
    assert item["details"]["request_id"]
    assert item["ip_address"] == "127.0.0.1"
    assert "$2b$" not in api.get(LOGS, token=history.token, query_string={"page_size": 100}).get_data(as_text=True)


def test_audit_log_time_filters_accept_the_since_boundary_itself(api, raw_db, history):
    newest = raw_db.execute(
        "SELECT id, created_at FROM audit_logs WHERE tenant_id = %s ORDER BY created_at DESC, id DESC LIMIT 1",
        (history.world.tenant.id,),
    ).fetchone()
    assert str(newest[0]) in all_ids(api, history.token, since=newest[1].isoformat())
    assert str(newest[0]) not in all_ids(api, history.token, until=newest[1].isoformat())
    later = (newest[1] + timedelta(microseconds=1)).isoformat()
    assert str(newest[0]) not in all_ids(api, history.token, since=later)
