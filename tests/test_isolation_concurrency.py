"""Isolation under real concurrency: gunicorn, two workers of eight threads, and a
database pool of two connections per worker, so every pooled connection serves
request after request of different tenants. Each response must hold only its own
tenant's data, and each tenant's rows only its own changes.
"""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.servers import GunicornServer
from tests.support import TenantWorld

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

ME = "/api/v1/tenants/me"
REQUESTS_PER_TENANT = 60
TIMEOUT = 30


@dataclass
class Member:
    world: TenantWorld
    tokens: dict[str, str]  # role -> access token

    @property
    def key_prefix(self) -> str:
        return f"k_{self.world.tenant.slug}_"

    def secrets(self) -> list[str]:
        w = self.world
        values = [str(w.tenant.id), w.tenant.slug, w.tenant.name, self.key_prefix]
        for admin in (w.owner, w.admin, w.viewer):
            values += [str(admin.id), admin.email]
        return values


@pytest.fixture(scope="module")
def server(migrated):
    with GunicornServer(workers=2, threads=8, env={"DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "0"}) as running:
        yield running


def _members(server, factory, count: int = 2) -> list[Member]:
    members = []
    for n in range(count):
        tag = uuid.uuid4().hex[:10]
        world = factory.world(slug=f"conc{n}-{tag}", name=f"Concurrent {n} {tag}")
        tokens = {}
        for role in ("owner", "admin", "viewer"):
            admin = world.by_role(role)
            response = requests.post(
                f"{server.url}/api/v1/auth/login",
                json={"email": admin.email, "password": admin.password},
                timeout=TIMEOUT,
            )
            assert response.status_code == 200, response.text
            tokens[role] = response.json()["access_token"]
        members.append(Member(world, tokens))
    return members


def _jobs(members: list[Member]) -> list[tuple[Member, str, str, dict | None, str]]:
    """(member, method, path, body, role), interleaved across tenants."""
    jobs = []
    for member in members:
        for i in range(REQUESTS_PER_TENANT):
            kind, turn = i % 3, i // 3
            if kind == 0:
                jobs.append((member, "GET", ME, None, ("owner", "admin", "viewer")[turn % 3]))
            elif kind == 1:
                jobs.append((member, "GET", f"{ME}/admins", None, ("viewer", "owner", "admin")[turn % 3]))
            else:
                body = {"settings": {f"{member.key_prefix}{i}": i, "last_writer": member.world.tenant.slug}}
                jobs.append((member, "PATCH", ME, body, ("owner", "admin")[turn % 2]))
    random.Random(4).shuffle(jobs)
    return jobs


def _send(server, job) -> tuple:
    member, method, path, body, role = job
    response = requests.request(
        method,
        f"{server.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {member.tokens[role]}"},
        timeout=TIMEOUT,
    )
    return job, response.status_code, response.text, response.json() if response.content else None


def _check_own(member: Member, others: list[Member], method: str, path: str, text: str, body: dict) -> None:
    for other in others:
        for secret in other.secrets():
            assert secret not in text, f"{secret!r} of another tenant in a response to {member.world.tenant.slug}"
    world = member.world
    if path == ME:
        assert (body["id"], body["slug"], body["name"]) == (str(world.tenant.id), world.tenant.slug, world.tenant.name)
        assert body["settings"].get("last_writer", world.tenant.slug) == world.tenant.slug
        assert all(key == "last_writer" or key.startswith(member.key_prefix) for key in body["settings"])
    else:
        assert {item["id"] for item in body["items"]} == {
            str(world.owner.id),
            str(world.admin.id),
            str(world.viewer.id),
        }
        assert body["total"] == 3


def test_parallel_requests_of_two_tenants_only_ever_see_their_own_data(server, factory, raw_db):
    members = _members(server, factory)
    jobs = _jobs(members)
    assert len(jobs) >= 100
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda job: _send(server, job), jobs))

    for (member, method, path, _, role), status, text, body in results:
        assert status == 200, (method, path, role, text)
        others = [m for m in members if m is not member]
        _check_own(member, others, method, path, text, body)

    # Beneath the app: each tenant's settings hold only its own keys, and every
    # audit row of a tenant was written by one of its own admins.
    for member in members:
        settings = raw_db.execute("SELECT settings FROM tenants WHERE id = %s", (member.world.tenant.id,)).fetchone()[0]
        assert settings["last_writer"] == member.world.tenant.slug
        assert all(key == "last_writer" or key.startswith(member.key_prefix) for key in settings)
        own_admins = {member.world.owner.id, member.world.admin.id, member.world.viewer.id}
        actors = raw_db.execute(
            "SELECT DISTINCT user_id FROM audit_logs WHERE tenant_id = %s AND user_id IS NOT NULL",
            (member.world.tenant.id,),
        ).fetchall()
        assert {row[0] for row in actors} <= own_admins
    assert "Traceback" not in server.output()


def test_concurrent_settings_patches_of_one_tenant_are_all_applied(server, factory, raw_db):
    # Merge patches with distinct keys, sent at once: each answered 200, so each
    # key must be in the stored settings (no lost update).
    (member,) = _members(server, factory, count=1)
    patches = [{"settings": {f"{member.key_prefix}{i}": i}} for i in range(24)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(
            pool.map(
                lambda body: (
                    requests.patch(
                        f"{server.url}{ME}",
                        json=body,
                        headers={"Authorization": f"Bearer {member.tokens['owner']}"},
                        timeout=TIMEOUT,
                    ).status_code
                ),
                patches,
            )
        )
    assert statuses == [200] * len(patches)
    settings = raw_db.execute("SELECT settings FROM tenants WHERE id = %s", (member.world.tenant.id,)).fetchone()[0]
    missing = sorted(set(key for body in patches for key in body["settings"]) - set(settings))
    assert missing == [], f"{len(missing)} of {len(patches)} acknowledged settings changes were lost"
