"""ETag and If-Match: two people editing the same tenant or admin cannot silently
overwrite each other."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support import error_of

ME = "/api/v1/tenants/me"
ADMINS = "/api/v1/tenants/me/admins"


def test_get_sends_an_etag_that_a_change_alters(api, factory):
    world = factory.world()
    first = api.get(ME, world.owner)
    assert first.status_code == 200 and first.headers["ETag"].startswith('"')
    assert api.get(ME, world.owner).headers["ETag"] == first.headers["ETag"]  # stable
    changed = api.patch(ME, world.owner, json={"settings": {"greeting": "Marhaba"}})
    assert changed.headers["ETag"] != first.headers["ETag"]
    # The tag a PATCH answers with is the one a GET then gives: usable for the next change.
    assert api.get(ME, world.owner).headers["ETag"] == changed.headers["ETag"]


def test_a_stale_if_match_is_412_and_changes_nothing(api, factory, raw_db):
    world = factory.world()
    seen = api.get(ME, world.owner).headers["ETag"]
    assert api.patch(ME, world.admin, json={"name": "Renamed by the admin"}).status_code == 200
    stale = api.patch(ME, world.owner, json={"name": "Renamed by the owner"}, headers={"If-Match": seen})
    assert stale.status_code == 412
    assert error_of(stale)["code"] == "precondition_failed"
    assert raw_db.execute("SELECT name FROM tenants WHERE id = %s", (world.tenant.id,)).fetchone()[0] == (
        "Renamed by the admin"
    )
    fresh = api.get(ME, world.owner).headers["ETag"]
    applied = api.patch(ME, world.owner, json={"name": "Renamed by the owner"}, headers={"If-Match": fresh})
    assert applied.status_code == 200
    assert api.patch(ME, world.owner, json={"name": "Any"}, headers={"If-Match": "*"}).status_code == 200
    # A weak tag never matches (If-Match compares strongly).
    weak = api.patch(ME, world.owner, json={"name": "Weak"}, headers={"If-Match": "W/" + fresh})
    assert weak.status_code == 412


def test_admin_changes_and_deactivation_honour_if_match(api, factory):
    world = factory.world()
    path = f"{ADMINS}/{world.viewer.id}"
    seen = api.get(path, world.owner).headers["ETag"]
    assert api.patch(path, world.admin, json={"full_name": "Changed Meanwhile"}).status_code == 200
    for response in (
        api.patch(path, world.owner, json={"role": "admin"}, headers={"If-Match": seen}),
        api.post(f"{path}/deactivate", world.owner, headers={"If-Match": seen}),
    ):
        assert response.status_code == 412, response.get_json()
    current = api.get(path, world.owner)
    assert current.get_json()["role"] == "viewer" and current.get_json()["is_active"] is True
    deactivated = api.post(f"{path}/deactivate", world.owner, headers={"If-Match": current.headers["ETag"]})
    assert deactivated.status_code == 200


def test_two_edits_with_the_same_tag_at_once_one_wins_one_gets_412(app, factory):
    """The tag is compared under the row's lock: both cannot pass."""
    from tests.support import ApiClient

    world = factory.world()
    api = ApiClient(app.test_client(), factory)
    seen = api.get(ME, world.owner).headers["ETag"]
    barrier = threading.Barrier(2)

    def edit(name):
        client = ApiClient(app.test_client(), factory)
        barrier.wait(timeout=30)
        return client.patch(ME, world.owner, json={"name": name}, headers={"If-Match": seen}).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(edit, ["First", "Second"]))
    assert statuses == [200, 412]
