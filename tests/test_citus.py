"""The service on a Citus cluster: where the rows are, a tenant on a shard of its own,
and a worker that stops and comes back. The Citus lane only (`make test-citus`,
TEST_LANE=citus): a coordinator and two workers of the suite's own
(tests/citus_cluster.py), the schema distributed by `flask citus distribute`.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from tests.conftest import CITUS_LANE, dispose
from tests.support import PASSWORD, TenantWorld, error_of

pytestmark = pytest.mark.skipif(not CITUS_LANE, reason="Citus lane only (make test-citus)")

ME = "/api/v1/tenants/me"
POOL = 10  # more than the app's pooled connections (DB_POOL_SIZE + overflow, per engine)


def worker_port(raw_db, table: str, tenant_id: uuid.UUID) -> int:
    """The port of the node that holds the tenant's shard of `table`."""
    return raw_db.execute(
        "SELECT p.nodeport FROM pg_dist_shard_placement p "
        "WHERE p.shardid = get_shard_id_for_distribution_column(%s, %s)",
        [table, tenant_id],
    ).fetchone()[0]


def shard_rows(cluster, port: int, raw_db, table: str, tenant_id: uuid.UUID) -> int:
    """Rows of the tenant in its shard of `table`, read on the worker itself."""
    shard = raw_db.execute("SELECT get_shard_id_for_distribution_column(%s, %s)", [table, tenant_id]).fetchone()[0]
    node = next(n for n in cluster.workers if n.port == port)
    column = "id" if table == "tenants" else "tenant_id"
    with psycopg.connect(node.url("wafaa_test"), autocommit=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}_{shard} WHERE {column} = %s", [tenant_id]).fetchone()[0]


def one_tenant_per_worker(factory, raw_db, cluster) -> dict[int, TenantWorld]:
    """Tenants until each worker holds one (hashing decides; 40 tenants all on one
    of two workers would be a chance of 2^-39)."""
    found: dict[int, TenantWorld] = {}
    for _ in range(40):
        world = factory.world()
        found.setdefault(worker_port(raw_db, "tenants", world.tenant.id), world)
        if len(found) == len(cluster.workers):
            break
    return found


def test_the_tables_are_distributed_by_tenant_and_the_registries_replicated(raw_db):
    rows = raw_db.execute(
        "SELECT logicalrelid::text, partmethod, column_to_column_name(logicalrelid, partkey), colocationid "
        "FROM pg_dist_partition"
    ).fetchall()
    kinds = {table: (method, column) for table, method, column, _ in rows}
    assert kinds["tenants"] == ("h", "id")
    for table in ("tenant_admins", "auth_sessions", "audit_logs", "login_throttles"):
        assert kinds[table] == ("h", "tenant_id"), table
    for table in ("tenant_slugs", "admin_emails", "wafaa_private.binding_key"):
        assert kinds[table][0] == "n", table  # reference tables: one shard, on every node
    colocation = {table: group for table, method, _, group in rows if method == "h"}
    assert len(set(colocation.values())) == 1, colocation  # all co-located with tenants


def test_rows_of_different_tenants_land_on_different_workers(citus_cluster, factory, raw_db, api):
    placed = one_tenant_per_worker(factory, raw_db, citus_cluster)
    assert set(placed) == {worker.port for worker in citus_cluster.workers}
    for port, world in placed.items():
        tenant = world.tenant.id
        # Every table of the tenant sits on the same worker (co-location)...
        for table in ("tenant_admins", "auth_sessions", "audit_logs"):
            assert worker_port(raw_db, table, tenant) == port
        api.login(world.owner)  # a session and its audit row, written there
        assert shard_rows(citus_cluster, port, raw_db, "tenants", tenant) == 1
        assert shard_rows(citus_cluster, port, raw_db, "tenant_admins", tenant) == 3
        assert shard_rows(citus_cluster, port, raw_db, "auth_sessions", tenant) == 1
        # ...and the API serves each tenant its own rows.
        me = api.get(ME, world.viewer)
        assert me.status_code == 200 and me.get_json()["id"] == str(tenant)


def test_a_tenant_isolated_to_its_own_shard_keeps_working(factory, raw_db, api):
    world, neighbour = factory.world(), factory.world()
    raw_db.execute(
        "SELECT isolate_tenant_to_new_shard('tenants', %s, 'CASCADE', shard_transfer_mode => 'block_writes')",
        [world.tenant.id],
    )
    alone = raw_db.execute(
        "SELECT shardminvalue = shardmaxvalue FROM pg_dist_shard "
        "WHERE shardid = get_shard_id_for_distribution_column('tenants', %s)",
        [world.tenant.id],
    ).fetchone()[0]
    assert alone  # a shard that holds exactly one hash value: this tenant's
    # The split leaves the old shards to Citus's maintenance daemon, which drops
    # them up to 15 s later (citus.defer_shard_delete_interval). Dropping one locks
    # the registry shard its foreign key names, which the next tests' cleanup
    # TRUNCATE ... CASCADE locks in the other order: a deadlock that failed a CI
    # run. Dropped now, while nothing else runs (again if the daemon held one of
    # them at that moment: a resource it cannot lock within 1 s is skipped).
    deadline = time.monotonic() + 30
    while raw_db.execute("SELECT count(*) FROM pg_dist_cleanup").fetchone()[0]:
        assert time.monotonic() < deadline, "the split's old shards were not dropped"
        raw_db.execute("CALL citus_cleanup_orphaned_resources()")

    headers = api.headers(world.owner)
    assert api.get(ME, headers=headers).get_json()["id"] == str(world.tenant.id)
    patched = api.patch(ME, headers=headers, json={"settings": {"isolated": True}})
    assert patched.status_code == 200 and patched.get_json()["settings"] == {"isolated": True}
    created = api.post(
        f"{ME}/admins",
        headers=headers,
        json={"email": "new@isolated.test", "full_name": "New", "role": "viewer", "password": PASSWORD},
    )
    assert created.status_code == 201, created.get_json()
    log = api.get(f"{ME}/audit-logs", headers=headers).get_json()["items"]
    assert {"admin.created", "tenant.updated", "auth.login"} <= {row["action"] for row in log}
    # The neighbour, on the shard it had, is unaffected and sees only its own.
    other = api.get(f"{ME}/admins", neighbour.owner).get_json()["items"]
    assert {row["email"] for row in other} == {neighbour.owner.email, neighbour.admin.email, neighbour.viewer.email}


def test_with_a_worker_stopped_its_tenants_get_503_and_the_others_are_served(citus_cluster, factory, raw_db, api):
    placed = one_tenant_per_worker(factory, raw_db, citus_cluster)
    stopped_port, served_port = (worker.port for worker in citus_cluster.workers)
    down, up = placed[stopped_port], placed[served_port]
    tokens = {id(world): api.login(world.owner)["access_token"] for world in (down, up)}
    node = next(n for n in citus_cluster.workers if n.port == stopped_port)
    citus_cluster.stop_node(node)
    try:
        # The other worker's tenant: reads, writes and logins as usual.
        assert api.get(ME, token=tokens[id(up)]).status_code == 200
        patched = api.patch(ME, token=tokens[id(up)], json={"settings": {"during": "outage"}})
        assert patched.status_code == 200, patched.get_json()
        assert api.get(f"{ME}/audit-logs", token=tokens[id(up)]).status_code == 200
        assert (
            api.client.post("/api/v1/auth/login", json={"email": up.admin.email, "password": PASSWORD}).status_code
            == 200
        )

        # The stopped worker's tenant: 503 in the one error format, nothing of anyone.
        for response in (
            api.get(ME, token=tokens[id(down)]),
            api.get(f"{ME}/admins", token=tokens[id(down)]),
            api.client.post("/api/v1/auth/login", json={"email": down.admin.email, "password": PASSWORD}),
        ):
            assert response.status_code == 503, response.get_json()
            assert error_of(response)["code"] == "service_unavailable"
            for secret in (str(down.tenant.id), str(up.tenant.id), down.owner.email, up.owner.email):
                assert secret not in response.get_data(as_text=True)

        # Writes to a replicated registry need every node: creating an admin is
        # refused with 503 even in a tenant whose own worker is up.
        created = api.post(
            f"{ME}/admins",
            token=tokens[id(up)],
            json={"email": "during@outage.test", "full_name": "During", "role": "viewer", "password": PASSWORD},
        )
        assert created.status_code == 503, created.get_json()
        assert error_of(created)["code"] == "service_unavailable"
    finally:
        citus_cluster.start_node(node)
        citus_cluster.wait_ready(node)

    # Back, with no restart of anything: every tenant is served again, and what
    # failed can be done now. A pooled connection whose coordinator backend still
    # held a connection to the stopped worker fails its next transaction once,
    # with 503 like the rest (Citus then drops it); so at most one 503 per pooled
    # connection, then 200.
    assert until_not_503(lambda: api.get(ME, token=tokens[id(down)])) == 200
    assert until_not_503(lambda: api.get(ME, token=tokens[id(up)])) == 200
    assert api.get(ME, token=tokens[id(up)]).get_json()["settings"] == {"during": "outage"}
    body = {"email": "after@outage.test", "full_name": "After", "role": "viewer", "password": PASSWORD}
    assert until_not_503(lambda: api.post(f"{ME}/admins", token=tokens[id(up)], json=body)) == 201


def until_not_503(send, attempts: int = 2 * POOL) -> int:
    """The first status that is not 503, within `attempts` requests."""
    for _ in range(attempts):
        response = send()
        if response.status_code != 503:
            return response.status_code
        assert error_of(response)["code"] == "service_unavailable"
    return 503


@pytest.fixture(autouse=True)
def _fresh_connections(app):
    """After each test here, the app's pools start afresh: connections that knew
    the stopped worker must not fail the next test's set-up (its factories)."""
    yield
    dispose(app)


def test_row_level_security_is_enforced_on_the_shards(citus_cluster, factory, raw_db, api, database_url):
    placed = one_tenant_per_worker(factory, raw_db, citus_cluster)
    (port_a, a), (port_b, b) = sorted(placed.items())
    api.login(a.owner)
    session = raw_db.execute("SELECT id FROM auth_sessions WHERE admin_id = %s", [a.owner.id]).fetchone()[0]
    service = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(service) as conn:
        # Bound to A through A's live session, as a request is: a query of every
        # shard returns A's admins only, B's worker filtering its own shard.
        assert conn.execute("SELECT wafaa_bind_session(%s, %s, %s)", [a.tenant.id, session, a.owner.id]).fetchone()[0]
        tenants = {row[0] for row in conn.execute("SELECT tenant_id FROM tenant_admins")}
        assert tenants == {a.tenant.id}
        # Naming B by hand reaches B's worker (SET LOCAL is forwarded), whose
        # policy finds no proof for B: nothing.
        conn.execute(f"SET LOCAL app.tenant_id = '{b.tenant.id}'")
        assert conn.execute("SELECT count(*) FROM tenant_admins").fetchone()[0] == 0
        conn.rollback()
    # On B's worker itself, as the service's role, B's shard shows nothing without a binding.
    shard = raw_db.execute("SELECT get_shard_id_for_distribution_column('tenant_admins', %s)", [b.tenant.id]).fetchone()
    node = next(n for n in citus_cluster.workers if n.port == port_b)
    with psycopg.connect(node.url("wafaa_test", user="wafaa_service"), autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM tenant_admins_{shard[0]}").fetchone()[0] == 0
        conn.execute(f"SET app.tenant_id = '{b.tenant.id}'")
        assert conn.execute(f"SELECT count(*) FROM tenant_admins_{shard[0]}").fetchone()[0] == 0
    assert shard_rows(citus_cluster, port_b, raw_db, "tenant_admins", b.tenant.id) == 3  # they are there
