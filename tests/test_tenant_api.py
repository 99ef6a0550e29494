"""GET and PATCH /api/v1/tenants/me: the caller's tenant, its name and settings.

Settings are changed with a JSON Merge Patch (RFC 7396) and must stay a JSON object
of at most 16 KiB (compact JSON, UTF-8) and 8 levels; every refused PATCH changes
nothing at all.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import error_of

ME = "/api/v1/tenants/me"
TENANT_FIELDS = {"id", "name", "slug", "subscription_tier", "is_active", "settings", "created_at", "updated_at"}
MAX_BYTES = 16 * 1024
MAX_DEPTH = 8


def tenant_row(raw_db, tenant_id) -> dict:
    return raw_db.execute("SELECT row_to_json(t) FROM tenants t WHERE id = %s", (tenant_id,)).fetchone()[0]


def updated_audit_rows(raw_db, tenant_id) -> int:
    return raw_db.execute(
        "SELECT count(*) FROM audit_logs WHERE tenant_id = %s AND action = 'tenant.updated'", (tenant_id,)
    ).fetchone()[0]


def compact_size(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def nested(levels: int, leaf=1) -> dict:
    """An object `levels` objects deep: nested(1) == {"l0": 1}."""
    value = leaf
    for level in reversed(range(levels)):
        value = {f"l{level}": value}
    return value


def rfc7396(target, patch):
    """MergePatch(Target, Patch), transcribed from RFC 7396 section 2: the test's oracle."""
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        else:
            target = copy.deepcopy(target)
        for name, value in patch.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = rfc7396(target.get(name), value)
        return target
    return patch


# --- GET -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
def test_any_role_reads_its_tenant(api, factory, raw_db, role):
    world = factory.world(settings={"greeting": "Marhaba", "nested": {"ok": True}})
    factory.world()  # another tenant, which must not matter
    response = api.get(ME, world.by_role(role))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == TENANT_FIELDS
    row = tenant_row(raw_db, world.tenant.id)
    assert body["id"] == str(world.tenant.id)
    assert (body["name"], body["slug"], body["subscription_tier"]) == (row["name"], row["slug"], "free")
    assert body["is_active"] is True
    assert body["settings"] == {"greeting": "Marhaba", "nested": {"ok": True}}
    assert datetime.fromisoformat(body["created_at"]) == datetime.fromisoformat(row["created_at"])
    assert datetime.fromisoformat(body["updated_at"]) == datetime.fromisoformat(row["updated_at"])
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


def test_reading_the_tenant_needs_a_token(api, factory):
    factory.world()
    response = api.get(ME)
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_missing"


# --- PATCH: who, what ----------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_and_admin_change_name_and_settings(api, factory, raw_db, role):
    world = factory.world(settings={"keep": 1, "drop": 2})
    before = tenant_row(raw_db, world.tenant.id)
    response = api.patch(
        ME, world.by_role(role), json={"name": "  Riyadh Grand  ", "settings": {"drop": None, "new": "v"}}
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    after = tenant_row(raw_db, world.tenant.id)
    # The answer is the updated tenant, and it is what was stored.
    assert body["name"] == after["name"] == "Riyadh Grand"
    assert body["settings"] == after["settings"] == {"keep": 1, "new": "v"}
    assert datetime.fromisoformat(body["updated_at"]) == datetime.fromisoformat(after["updated_at"])
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(before["updated_at"])
    # Nothing else moved.
    for name in ("id", "slug", "subscription_tier", "is_active", "created_at"):
        assert after[name] == before[name], name


def test_viewer_cannot_patch_and_nothing_changes(api, factory, raw_db):
    world = factory.world(settings={"a": 1})
    before = tenant_row(raw_db, world.tenant.id)
    response = api.patch(ME, world.viewer, json={"name": "Viewer Was Here", "settings": {"a": 2}})
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    assert tenant_row(raw_db, world.tenant.id) == before
    assert updated_audit_rows(raw_db, world.tenant.id) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "3f2b1c9e-0000-4000-8000-000000000001"),
        ("slug", "new-slug"),
        ("is_active", False),
        ("subscription_tier", "premium"),
        ("created_at", "2020-01-01T00:00:00+00:00"),
        ("updated_at", "2020-01-01T00:00:00+00:00"),
        ("tenant_id", "3f2b1c9e-0000-4000-8000-000000000002"),
        ("owner_id", "3f2b1c9e-0000-4000-8000-000000000003"),
        ("unknown", "x"),
    ],
)
@pytest.mark.parametrize("role", ["owner", "admin"])
def test_any_other_field_is_refused_and_nothing_changes(api, factory, raw_db, field, value, role):
    world = factory.world()
    before = tenant_row(raw_db, world.tenant.id)
    # A legitimate change rides along: it must not be applied either.
    response = api.patch(ME, world.by_role(role), json={"name": "Should Not Stick", field: value})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert field in error["details"]["json"]
    assert tenant_row(raw_db, world.tenant.id) == before
    assert updated_audit_rows(raw_db, world.tenant.id) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "   "},
        {"name": ""},
        {"name": "x" * 256},
        {"name": None},
        {"name": 42},
        {"name": "nul\x00byte"},
        {"settings": []},
        {"settings": "a string"},
        {"settings": 5},
        {"settings": None},
        {"settings": {"bad": "nul\x00byte"}},
    ],
    ids=lambda b: json.dumps(b)[:40],
)
def test_invalid_name_or_settings_is_refused_and_nothing_changes(api, factory, raw_db, body):
    world = factory.world(settings={"a": 1})
    before = tenant_row(raw_db, world.tenant.id)
    response = api.patch(ME, world.owner, json=body)
    assert response.status_code == 422
    assert set(error_of(response)["details"]["json"]) == set(body)
    assert tenant_row(raw_db, world.tenant.id) == before


def test_non_finite_numbers_in_settings_are_refused(api, factory, raw_db):
    world = factory.world()
    before = tenant_row(raw_db, world.tenant.id)
    response = api.patch(ME, world.owner, data='{"settings": {"x": NaN}}', headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert tenant_row(raw_db, world.tenant.id) == before


def test_name_of_255_characters_is_accepted(api, factory, raw_db):
    world = factory.world()
    response = api.patch(ME, world.admin, json={"name": "n" * 255})
    assert response.status_code == 200
    assert tenant_row(raw_db, world.tenant.id)["name"] == "n" * 255


def test_updated_at_advances_with_every_change(api, factory):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    stamps = [datetime.fromisoformat(api.get(ME, token=token).get_json()["updated_at"])]
    for n in range(3):
        response = api.patch(ME, token=token, json={"settings": {"n": n}})
        stamps.append(datetime.fromisoformat(response.get_json()["updated_at"]))
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


# --- settings: JSON Merge Patch -----------------------------------------------------

# RFC 7396 Appendix A, the cases whose target and patch are both objects.
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({"a": "foo"}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_EXAMPLES, ids=[str(i) for i in range(len(RFC_EXAMPLES))])
def test_settings_patch_follows_the_rfc_7396_examples(api, factory, raw_db, target, patch, result):
    world = factory.world(settings=target)
    response = api.patch(ME, world.admin, json={"settings": patch})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["settings"] == result
    assert tenant_row(raw_db, world.tenant.id)["settings"] == result


def test_settings_merge_recursively_and_replace_arrays(api, factory, raw_db):
    target = {"theme": {"colors": {"bg": "#fff", "fg": "#000"}, "font": "Cairo"}, "langs": ["ar", "en"], "n": 1}
    world = factory.world(settings=target)
    patch = {"theme": {"colors": {"fg": None, "accent": "#c00"}}, "langs": ["fr"], "n": None}
    response = api.patch(ME, world.owner, json={"settings": patch})
    expected = {"theme": {"colors": {"bg": "#fff", "accent": "#c00"}, "font": "Cairo"}, "langs": ["fr"]}
    assert response.get_json()["settings"] == expected
    assert tenant_row(raw_db, world.tenant.id)["settings"] == expected


JSON_KEYS = st.sampled_from(["a", "b", "c", "lang", "theme"])
JSON_SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS | st.none(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(JSON_KEYS, children, max_size=3),
    max_leaves=10,
)
JSON_OBJECTS = st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=4)


@pytest.fixture
def merge_target(api, factory):
    """One tenant and an admin token, shared by the examples of the property below."""
    world = factory.world()
    return world, api.login(world.admin)["access_token"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=JSON_OBJECTS, patch=JSON_OBJECTS)
def test_settings_patch_is_rfc_7396_merge_patch(api, raw_db, merge_target, target, patch):
    world, token = merge_target
    # Each example starts from its own target settings, written beneath the app.
    raw_db.execute("UPDATE tenants SET settings = %s::jsonb WHERE id = %s", (json.dumps(target), world.tenant.id))
    response = api.patch(ME, token=token, json={"settings": patch})
    expected = rfc7396(target, patch)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["settings"] == expected
    assert tenant_row(raw_db, world.tenant.id)["settings"] == expected


# --- settings: size and depth ------------------------------------------------------


def test_settings_of_exactly_8_levels_are_accepted_and_9_refused(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    ok = api.patch(ME, token=token, json={"settings": nested(MAX_DEPTH)})
    assert ok.status_code == 200, ok.get_json()
    assert tenant_row(raw_db, world.tenant.id)["settings"] == nested(MAX_DEPTH)
    before = tenant_row(raw_db, world.tenant.id)
    too_deep = api.patch(ME, token=token, json={"settings": {"other": nested(MAX_DEPTH)}})
    assert too_deep.status_code == 422
    assert "settings" in error_of(too_deep)["details"]["json"]
    assert tenant_row(raw_db, world.tenant.id) == before


def test_arrays_count_as_levels_of_depth(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    # 6 objects, then 2 arrays around a scalar: 8 levels.
    assert api.patch(ME, token=token, json={"settings": nested(6, leaf=[[1]])}).status_code == 200
    before = tenant_row(raw_db, world.tenant.id)
    assert api.patch(ME, token=token, json={"settings": nested(6, leaf=[[[1]]])}).status_code == 422
    assert tenant_row(raw_db, world.tenant.id) == before


def test_a_merge_whose_result_is_too_deep_is_refused(api, factory, raw_db):
    # Settings already deeper than allowed (written before the rule): a patch that
    # keeps them so is refused; one that removes the deep part is accepted.
    world = factory.world(settings={"deep": nested(MAX_DEPTH), "flat": 1})
    token = api.login(world.owner)["access_token"]
    before = tenant_row(raw_db, world.tenant.id)
    refused = api.patch(ME, token=token, json={"settings": {"flat": 2}})
    assert refused.status_code == 422
    assert tenant_row(raw_db, world.tenant.id) == before
    accepted = api.patch(ME, token=token, json={"settings": {"deep": None, "flat": 2}})
    assert accepted.status_code == 200
    assert tenant_row(raw_db, world.tenant.id)["settings"] == {"flat": 2}


def _settings_of_size(size: int, key: str = "k") -> dict:
    value = {key: ""}
    value[key] = "x" * (size - compact_size(value))
    assert compact_size(value) == size
    return value


def test_settings_of_exactly_16_kib_are_accepted_and_one_byte_more_refused(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    exact = _settings_of_size(MAX_BYTES)
    assert api.patch(ME, token=token, json={"settings": exact}).status_code == 200
    assert tenant_row(raw_db, world.tenant.id)["settings"] == exact
    before = tenant_row(raw_db, world.tenant.id)
    response = api.patch(ME, token=token, json={"settings": _settings_of_size(MAX_BYTES + 1)})
    assert response.status_code == 422
    assert "settings" in error_of(response)["details"]["json"]
    assert tenant_row(raw_db, world.tenant.id) == before


def test_a_patch_that_pushes_the_merged_settings_over_16_kib_is_refused(api, factory, raw_db):
    existing = {"a": "x" * 10_000}
    world = factory.world(settings=existing)
    token = api.login(world.owner)["access_token"]
    before = tenant_row(raw_db, world.tenant.id)
    # The patch alone is small enough; together they are one byte over.
    room = MAX_BYTES - compact_size({**existing, "b": ""})
    over = {"b": "y" * (room + 1)}
    assert compact_size(over) < MAX_BYTES
    assert compact_size(rfc7396(existing, over)) == MAX_BYTES + 1
    response = api.patch(ME, token=token, json={"settings": over})
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"
    assert tenant_row(raw_db, world.tenant.id) == before
    assert updated_audit_rows(raw_db, world.tenant.id) == 0
    # Exactly at the limit, the same merge is accepted.
    exact = {"b": "y" * room}
    assert api.patch(ME, token=token, json={"settings": exact}).status_code == 200
    assert compact_size(tenant_row(raw_db, world.tenant.id)["settings"]) == MAX_BYTES


def test_multi_byte_characters_count_in_bytes_towards_the_limit(api, factory, raw_db):
    world = factory.world()
    token = api.login(world.owner)["access_token"]
    # 8,189 "é": fewer than 16,384 characters, but 2 bytes each in UTF-8, so 16,386 bytes.
    value = {"k": "é" * ((MAX_BYTES - compact_size({"k": ""})) // 2 + 1)}
    assert compact_size(value) > MAX_BYTES
    assert len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) < MAX_BYTES
    assert api.patch(ME, token=token, json={"settings": value}).status_code == 422


@pytest.mark.parametrize(
    "body", [{"name": ""}, {"settings": "not an object"}, {"unknown": 1}, {"name": "\x1b[2JCleared"}], ids=str
)
def test_a_viewer_is_refused_before_its_body_is_read(api, factory, raw_db, body):
    """403, whatever the body: a viewer learns nothing of the rules of a request it
    may not make (no 422 details). An admin sending the same body gets the 422."""
    world = factory.world()
    viewer = api.patch(ME, world.viewer, json=body)
    assert viewer.status_code == 403
    assert error_of(viewer)["code"] == "forbidden"
    assert api.patch(ME, world.admin, json=body).status_code == 422
