"""Issue 10, item 8, rule by rule: what Schemathesis found where the document and
the service disagreed, each pinned by a test that does not depend on a fuzzer's
luck. (The whole `st run` is tests/test_schemathesis_run.py.)"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import error_of
from wafaa.schemas.audit import CURSOR_PATTERN, cursor_of
from wafaa.schemas.common import EMAIL_PATTERN, NAME_PATTERN

ME = "/api/v1/tenants/me"
ADMINS = f"{ME}/admins"


@pytest.mark.parametrize(("method", "path"), [("PATCH", ME), ("PATCH", ADMINS + "/{id}"), ("POST", ADMINS)])
def test_an_absent_required_body_is_refused_not_read_as_empty(api, factory, method, path):
    world = factory.world()
    response = api.request(method, path.format(id=world.viewer.id), world.owner)
    assert response.status_code == 422
    assert error_of(response)["details"] == {"json": {"_schema": ["A JSON body is required."]}}
    # An empty object is a body: a PATCH that changes nothing.
    if method == "PATCH":
        assert api.request(method, path.format(id=world.viewer.id), world.owner, json={}).status_code == 200


def test_refresh_and_logout_bodies_are_optional_as_documented(api, factory, spec):
    operations = spec["paths"]
    assert operations["/api/v1/auth/refresh"]["post"]["requestBody"]["required"] is False
    assert operations["/api/v1/auth/logout"]["post"]["requestBody"]["required"] is False
    assert operations[ME]["patch"]["requestBody"]["required"] is True
    tokens = api.login(factory.world().owner)
    refreshed = api.post("/api/v1/auth/refresh", token=tokens["refresh_token"])
    assert refreshed.status_code == 200


@pytest.mark.parametrize(
    "query", ["page=1&page=x", "page=1&page=2", "role=owner&role=viewer", "page_size=5&page_size=5"]
)
def test_a_query_parameter_given_twice_is_refused(api, factory, query):
    response = api.get(f"{ADMINS}?{query}", factory.world().owner)
    assert response.status_code == 422
    assert list(error_of(response)["details"]["query"]) == [query.split("=")[0]]


def test_an_empty_or_inverted_audit_window_is_an_empty_page(api, factory):
    owner = factory.world().owner
    moment = datetime.now(UTC).isoformat()
    earlier = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for since, until in ((moment, moment), (moment, earlier)):
        response = api.get(f"{ME}/audit-logs", owner, query_string={"since": since, "until": until})
        assert response.status_code == 200
        assert response.get_json()["items"] == [] and response.get_json()["total"] == 0


def test_after_and_before_together_give_the_entries_between(api, factory):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    for n in range(4):
        assert api.patch(ME, token=token, json={"name": f"Name {n}"}).status_code == 200
    everything = api.get(f"{ME}/audit-logs", token=token).get_json()["items"]
    newest, oldest = everything[0], everything[-1]
    between = api.get(
        f"{ME}/audit-logs",
        token=token,
        query_string={
            "after": cursor_of(datetime.fromisoformat(newest["created_at"]), uuid.UUID(newest["id"])),
            "before": cursor_of(datetime.fromisoformat(oldest["created_at"]), uuid.UUID(oldest["id"])),
        },
    ).get_json()
    assert [item["id"] for item in between["items"]] == [item["id"] for item in everything[1:-1]]


def test_every_string_of_the_cursor_pattern_is_a_position(api, factory):
    owner = factory.world().owner
    for cursor in ("0.00000000000000000000000000000000", "99999999999999999.ffffffffffffffffffffffffffffffff"):
        assert re.match(CURSOR_PATTERN, cursor)
        for name in ("after", "before"):
            assert api.get(f"{ME}/audit-logs", owner, query_string={name: cursor}).status_code == 200


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("Ada", True),
        ("  Ada  ", True),
        ("A\u00a0B", True),
        (" ", False),
        ("\u3000", False),
        ("A\x00", False),
        ("A\x1b[31m", False),
        ("A\u202eB", False),
        ("A\x85", False),
        ("", False),
    ],
)
def test_the_name_pattern_is_the_service_rule(api, factory, name, accepted):
    assert bool(re.match(NAME_PATTERN, name)) is accepted
    response = api.patch(ME, factory.world().owner, json={"name": name})
    assert response.status_code == (200 if accepted else 422), response.get_json()


@pytest.mark.parametrize(
    ("email", "accepted"),
    [("new@example.com", True), ("x@b", False), ("x@b.c", False), ("x@b.co", True), ("@b.co", False)],
)
def test_the_email_pattern_agrees_with_the_service(api, factory, email, accepted):
    assert bool(re.match(EMAIL_PATTERN, email)) is accepted
    body = {"email": email, "full_name": "New", "role": "viewer", "password": "a long enough password"}
    assert api.post(ADMINS, factory.world().owner, json=body).status_code == (201 if accepted else 422)


def test_deactivation_is_a_post_and_delete_is_not_served(api, factory):
    world = factory.world()
    path = f"{ADMINS}/{world.viewer.id}"
    assert api.request("DELETE", path, world.owner).status_code == 405
    deactivated = api.post(f"{path}/deactivate", world.owner)
    assert deactivated.status_code == 200 and deactivated.get_json()["is_active"] is False
    # Still readable: it was never a deletion.
    assert api.get(path, world.owner).get_json()["is_active"] is False


@pytest.fixture
def spec(client) -> dict:
    return client.get("/openapi.json").get_json()
