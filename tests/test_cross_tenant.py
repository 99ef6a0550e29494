"""Proof of no leakage: tenant A's tokens (every role) aimed at tenant B's data.

Each scenario is one request made with a token of tenant A that names tenant B
somewhere: B's ids in the path, the query string, the body or headers. For every
one of them:

* the response holds nothing of B (B's tenant id, slug, name, admin ids, emails,
  names, session ids and refresh-token jtis never appear in it);
* B's rows (tenant, admins, sessions, audit log) are byte-for-byte unchanged;
* another tenant's resource is 404 (the same answer as an id that does not exist),
  never 403.

The scenarios are the cross product of PROBES and the three roles; a test below
checks there are at least 100 distinct ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from flask_jwt_extended import create_access_token
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import PASSWORD, AdminRef, TenantRef, TenantWorld, error_of
from wafaa import audit
from wafaa.extensions import db
from wafaa.models import AdminRole, AuthSession, Tenant, TenantAdmin
from wafaa.passwords import hash_password
from wafaa.tenancy import system_scope

ROLES = ("owner", "admin", "viewer")
ME = "/api/v1/tenants/me"


@dataclass(frozen=True)
class Other:
    """Tenant B, seeded with identifiers that cannot occur by chance in A's data."""

    tenant_id: uuid.UUID
    slug: str
    name: str
    admins: dict[str, tuple[uuid.UUID, str, str]]  # role -> (id, email, full_name)
    sessions: dict[str, tuple[uuid.UUID, str]]  # role -> (session id, refresh jti)

    def admin_id(self, role: str) -> str:
        return str(self.admins[role][0])

    def email(self, role: str) -> str:
        return self.admins[role][1]

    def session_id(self, role: str) -> str:
        return str(self.sessions[role][0])

    def secrets(self) -> list[str]:
        """Every string of B that must never reach A."""
        values = [str(self.tenant_id), self.tenant_id.hex, self.slug, self.name]
        for admin_id, email, full_name in self.admins.values():
            values += [str(admin_id), admin_id.hex, email, full_name]
        for session_id, jti in self.sessions.values():
            values += [str(session_id), session_id.hex, jti]
        return values


@dataclass
class Ctx:
    a: TenantWorld
    b: Other
    extra: dict = field(default_factory=dict)


def seed_other_tenant(app) -> Other:
    """Tenant B with an admin of each role, a live session each, and audit rows, in one transaction."""
    tag = uuid.uuid4().hex[:12]
    now = datetime.now(UTC)
    with app.app_context(), system_scope("cross-tenant test seed"):
        tenant = Tenant(
            id=uuid.uuid4(),
            name=f"Bravo Resort {tag}",
            slug=f"bravo-{tag}",
            settings={"bravo_secret": f"bravo-setting-{tag}"},
        )
        db.session.add(tenant)
        password_hash = hash_password(PASSWORD)
        admins, sessions = {}, {}
        for role in ROLES:
            admin = TenantAdmin(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                email=f"{role}-{tag}@bravo-{tag}.test",
                full_name=f"Bravo {role} {tag}",
                role=AdminRole(role),
                password_hash=password_hash,
            )
            db.session.add(admin)
            admins[role] = (admin.id, admin.email, admin.full_name)
        db.session.flush()
        for role in ROLES:
            session = AuthSession(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                admin_id=admins[role][0],
                refresh_jti=uuid.uuid4().hex,
                last_used_at=now,
                expires_at=now + timedelta(days=1),
            )
            db.session.add(session)
            sessions[role] = (session.id, session.refresh_jti)
            for action in ("auth.login", "tenant.updated"):
                audit.record(
                    action,
                    tenant_id=tenant.id,
                    resource_type="session" if action == "auth.login" else "tenant",
                    resource_id=session.id if action == "auth.login" else tenant.id,
                    actor_id=admins[role][0],
                )
        db.session.commit()
        return Other(tenant.id, tenant.slug, tenant.name, admins, sessions)


def snapshot_of(raw_db, tenant_id: uuid.UUID) -> dict[str, list]:
    """Every row of one tenant, as JSON text, straight from the tables."""
    queries = {
        "tenants": "SELECT row_to_json(t)::text FROM tenants t WHERE id = %s",
        "tenant_admins": "SELECT row_to_json(t)::text FROM tenant_admins t WHERE tenant_id = %s ORDER BY id",
        "auth_sessions": "SELECT row_to_json(t)::text FROM auth_sessions t WHERE tenant_id = %s ORDER BY id",
        "audit_logs": "SELECT row_to_json(t)::text FROM audit_logs t WHERE tenant_id = %s ORDER BY id",
    }
    return {name: [row[0] for row in raw_db.execute(sql, (tenant_id,))] for name, sql in queries.items()}


@pytest.fixture
def ctx(factory, app) -> Ctx:
    tag = uuid.uuid4().hex[:12]
    a = factory.world(slug=f"alpha-{tag}", name=f"Alpha Hotel {tag}")
    return Ctx(a=a, b=seed_other_tenant(app))


# --- the probes ----------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: Callable[[Ctx], str]
    expect: dict[str, set[int]]  # role -> acceptable statuses
    body: Callable[[Ctx], dict] | None = None
    query: Callable[[Ctx], dict] | None = None
    headers: Callable[[Ctx], dict] | None = None
    check: Callable[[Ctx, object], None] | None = None  # extra checks of a successful answer


def every(*statuses: int) -> dict[str, set[int]]:
    return dict.fromkeys(ROLES, set(statuses))


def managers(status: int, viewer: int = 403) -> dict[str, set[int]]:
    return {"owner": {status}, "admin": {status}, "viewer": {viewer}}


# Unknown query parameters may be ignored (200) or refused (422); either way, no leak.
IGNORED_OR_REFUSED = every(200, 422)


def _is_tenant_a(ctx: Ctx, response) -> None:
    if response.status_code == 200:
        body = response.get_json()
        assert (body["id"], body["slug"], body["name"]) == (str(ctx.a.tenant.id), ctx.a.tenant.slug, ctx.a.tenant.name)


def _only_a_admins(ctx: Ctx, response) -> None:
    if response.status_code == 200:
        ids = {item["id"] for item in response.get_json()["items"]}
        assert ids <= {str(ctx.a.owner.id), str(ctx.a.admin.id), str(ctx.a.viewer.id)}


def _no_audit_rows(ctx: Ctx, response) -> None:
    if response.status_code == 200:
        assert response.get_json()["total"] == 0
        assert response.get_json()["items"] == []


def _only_a_audit_rows(ctx: Ctx, response) -> None:
    if response.status_code == 200:
        a_admins = {str(ctx.a.owner.id), str(ctx.a.admin.id), str(ctx.a.viewer.id)}
        for item in response.get_json()["items"]:
            assert item["user_id"] in a_admins | {None}


def _new_admin_body(ctx: Ctx) -> dict:
    n = uuid.uuid4().hex[:10]
    return {
        "email": f"new-{n}@{ctx.a.tenant.slug}.test",
        "full_name": "New One",
        "role": "viewer",
        "password": PASSWORD,
    }


def _b_headers(ctx: Ctx) -> dict:
    return {
        "X-Tenant-ID": str(ctx.b.tenant_id),
        "X-Tenant": ctx.b.slug,
        "X-Forwarded-Host": f"{ctx.b.slug}.wafaa.example",
    }


def _admin_probes() -> list[Probe]:
    probes = []
    for target in ROLES:
        path = lambda c, t=target: f"{ME}/admins/{c.b.admin_id(t)}"  # noqa: E731
        probes += [
            Probe(f"get-b-{target}", "GET", path, every(404)),
            # A viewer is refused before anything is looked up (403 for any id,
            # existing or not, here or elsewhere): the answer says nothing of B.
            Probe(f"patch-name-of-b-{target}", "PATCH", path, managers(404), body=lambda c: {"full_name": "Hijacked"}),
            Probe(f"patch-role-of-b-{target}", "PATCH", path, managers(404), body=lambda c: {"role": "viewer"}),
            Probe(f"promote-b-{target}", "PATCH", path, managers(404), body=lambda c: {"role": "owner"}),
            Probe(f"deactivate-b-{target}", "PATCH", path, managers(404), body=lambda c: {"is_active": False}),
            Probe(
                f"deactivate-post-b-{target}",
                "POST",
                lambda c, t=target: f"{ME}/admins/{c.b.admin_id(t)}/deactivate",
                managers(404),
            ),
        ]
        probes.append(
            Probe(
                f"revoke-session-of-b-{target}",
                "DELETE",
                lambda c, t=target: f"/api/v1/auth/sessions/{c.b.session_id(t)}",
                every(404),
            )
        )
    return probes


def _me_probe(name: str, expect: dict[str, set[int]], **kwargs) -> Probe:
    return Probe(name, "GET", lambda c: ME, expect, check=_is_tenant_a, **kwargs)


def _only_own_sessions(ctx: Ctx, response) -> None:
    if response.status_code == 200:
        assert response.get_json(), "the caller's own session is listed"
        assert all(item["id"] not in {ctx.b.session_id(r) for r in ROLES} for item in response.get_json())


def _read_probes() -> list[Probe]:
    b_id = lambda c: str(c.b.tenant_id)  # noqa: E731
    probes = [
        _me_probe("me-query-tenant-id", IGNORED_OR_REFUSED, query=lambda c: {"tenant_id": b_id(c)}),
        _me_probe("me-query-tenant-slug", IGNORED_OR_REFUSED, query=lambda c: {"tenant": c.b.slug}),
        _me_probe("me-query-id", IGNORED_OR_REFUSED, query=lambda c: {"id": b_id(c)}),
        _me_probe("me-header-x-tenant-id", every(200), headers=lambda c: {"X-Tenant-ID": b_id(c)}),
        _me_probe("me-header-x-tenant", every(200), headers=lambda c: {"X-Tenant": c.b.slug}),
        _me_probe("me-header-forwarded-host", every(200), headers=lambda c: {"X-Forwarded-Host": f"{c.b.slug}.x.io"}),
        _me_probe("me-header-host", every(200), headers=lambda c: {"Host": f"{c.b.slug}.wafaa.example"}),
        _me_probe(
            "me-header-original-url",
            every(200),
            headers=lambda c: {"X-Original-URL": f"/api/v1/tenants/{b_id(c)}", "X-Rewrite-URL": f"/t/{c.b.slug}"},
        ),
        _me_probe("me-all-tenant-headers", every(200), headers=_b_headers),
        Probe(
            "sessions-with-b-headers",
            "GET",
            lambda c: "/api/v1/auth/sessions",
            every(200),
            headers=_b_headers,
            check=_only_own_sessions,
        ),
    ]
    admins = f"{ME}/admins"
    probes += [
        Probe(
            "admins-query-tenant-id",
            "GET",
            lambda c: admins,
            IGNORED_OR_REFUSED,
            query=lambda c: {"tenant_id": b_id(c)},
            check=_only_a_admins,
        ),
        Probe(
            "admins-role-owner-query-tenant",
            "GET",
            lambda c: admins,
            IGNORED_OR_REFUSED,
            query=lambda c: {"role": "owner", "tenant": c.b.slug},
            check=_only_a_admins,
        ),
        Probe(
            "admins-role-viewer-b-headers",
            "GET",
            lambda c: admins,
            every(200),
            query=lambda c: {"role": "viewer", "is_active": "true"},
            headers=_b_headers,
            check=_only_a_admins,
        ),
        Probe(
            "admins-page-size-100-b-headers",
            "GET",
            lambda c: admins,
            every(200),
            query=lambda c: {"page_size": 100},
            headers=_b_headers,
            check=_only_a_admins,
        ),
        Probe(
            "admins-query-b-admin-id",
            "GET",
            lambda c: admins,
            IGNORED_OR_REFUSED,
            query=lambda c: {"id": c.b.admin_id("owner"), "email": c.b.email("owner")},
            check=_only_a_admins,
        ),
    ]
    logs = f"{ME}/audit-logs"
    for role in ROLES:
        probes.append(
            Probe(
                f"audit-user-id-of-b-{role}",
                "GET",
                lambda c: logs,
                managers(200),
                query=lambda c, r=role: {"user_id": c.b.admin_id(r)},
                check=_no_audit_rows,
            )
        )
    probes += [
        Probe(
            "audit-login-rows-of-b-owner",
            "GET",
            lambda c: logs,
            managers(200),
            query=lambda c: {"action": "auth.login", "user_id": c.b.admin_id("owner")},
            check=_no_audit_rows,
        ),
        Probe(
            "audit-tenant-rows-b-headers",
            "GET",
            lambda c: logs,
            managers(200),
            query=lambda c: {"resource_type": "tenant"},
            headers=_b_headers,
            check=_only_a_audit_rows,
        ),
        Probe(
            "audit-session-rows",
            "GET",
            lambda c: logs,
            managers(200),
            query=lambda c: {"resource_type": "session", "page_size": 100},
            check=_only_a_audit_rows,
        ),
        Probe(
            "audit-query-tenant-id",
            "GET",
            lambda c: logs,
            {"owner": {200, 422}, "admin": {200, 422}, "viewer": {403, 422}},
            query=lambda c: {"tenant_id": b_id(c)},
            check=_only_a_audit_rows,
        ),
    ]
    return probes


def _write_probes() -> list[Probe]:
    b_id = lambda c: str(c.b.tenant_id)  # noqa: E731
    probes = [
        Probe("patch-me-id", "PATCH", lambda c: ME, managers(422), body=lambda c: {"id": b_id(c)}),
        Probe("patch-me-tenant-id", "PATCH", lambda c: ME, managers(422), body=lambda c: {"tenant_id": b_id(c)}),
        Probe("patch-me-slug", "PATCH", lambda c: ME, managers(422), body=lambda c: {"slug": c.b.slug}),
        Probe(
            "patch-me-name-and-tenant-id",
            "PATCH",
            lambda c: ME,
            managers(422),
            body=lambda c: {"name": "Renamed", "tenant_id": b_id(c)},
        ),
        Probe(
            "patch-me-settings-and-id",
            "PATCH",
            lambda c: ME,
            managers(422),
            body=lambda c: {"settings": {"k": 1}, "id": b_id(c)},
        ),
        Probe(
            "patch-me-settings-b-headers",
            "PATCH",
            lambda c: ME,
            managers(200),
            body=lambda c: {"settings": {"probe": "alpha"}},
            headers=_b_headers,
            check=_is_tenant_a,
        ),
        Probe(
            "patch-me-name-b-headers",
            "PATCH",
            lambda c: ME,
            managers(200),
            body=lambda c: {"name": "Alpha Renamed"},
            headers=_b_headers,
        ),
        Probe(
            "create-admin-with-tenant-id",
            "POST",
            lambda c: f"{ME}/admins",
            managers(422),
            body=lambda c: {**_new_admin_body(c), "tenant_id": b_id(c)},
        ),
        Probe(
            "create-admin-with-b-admin-id",
            "POST",
            lambda c: f"{ME}/admins",
            managers(422),
            body=lambda c: {**_new_admin_body(c), "id": c.b.admin_id("viewer")},
        ),
        Probe(
            "create-admin-with-b-owner-email",
            "POST",
            lambda c: f"{ME}/admins",
            managers(409),
            body=lambda c: {**_new_admin_body(c), "email": c.b.email("owner")},
        ),
        Probe(
            "create-admin-with-b-email-shouted",
            "POST",
            lambda c: f"{ME}/admins",
            managers(409),
            body=lambda c: {**_new_admin_body(c), "email": f"  {c.b.email('viewer').upper()} "},
        ),
        Probe(
            "create-admin-b-headers",
            "POST",
            lambda c: f"{ME}/admins",
            managers(201),
            body=_new_admin_body,
            headers=_b_headers,
        ),
        Probe(
            "move-own-admin-to-b",
            "PATCH",
            lambda c: f"{ME}/admins/{c.a.viewer.id}",
            managers(422),
            body=lambda c: {"tenant_id": b_id(c)},
        ),
    ]
    return probes


PROBES = _admin_probes() + _read_probes() + _write_probes()
SCENARIOS = [pytest.param(probe, role, id=f"{probe.name}-as-{role}") for probe in PROBES for role in ROLES]


def _send(api, ctx: Ctx, probe: Probe, token: str):
    kwargs = {}
    if probe.body is not None:
        kwargs["json"] = probe.body(ctx)
    if probe.query is not None:
        kwargs["query_string"] = probe.query(ctx)
    headers = probe.headers(ctx) if probe.headers is not None else {}
    return api.request(probe.method, probe.path(ctx), token=token, headers=headers, **kwargs)


def assert_nothing_of(other: Other, response) -> None:
    text = response.get_data(as_text=True)
    for secret in other.secrets():
        assert secret not in text, f"{secret!r} of tenant B leaked"
    for header, value in response.headers.items():
        for secret in other.secrets():
            assert secret not in value, f"{secret!r} of tenant B leaked in {header}"


@pytest.mark.parametrize(("probe", "role"), SCENARIOS)
def test_tenant_a_cannot_reach_tenant_b(api, raw_db, ctx, probe, role):
    token = api.login(ctx.a.by_role(role))["access_token"]
    before = snapshot_of(raw_db, ctx.b.tenant_id)

    response = _send(api, ctx, probe, token)

    assert response.status_code in probe.expect[role], response.get_json()
    assert_nothing_of(ctx.b, response)
    if response.status_code >= 400:
        error_of(response)
    if response.status_code == 404:
        # Exactly the answer for an id that does not exist anywhere.
        assert error_of(response)["code"] == "not_found"
    if probe.check is not None:
        probe.check(ctx, response)
    assert snapshot_of(raw_db, ctx.b.tenant_id) == before


def test_at_least_100_distinct_cross_tenant_scenarios():
    ids = [param.id for param in SCENARIOS]
    assert len(set(ids)) == len(ids)
    assert len(ids) >= 100
    # Every tenant-scoped route and method is among them.
    dummy = _dummy_ctx()
    routes = {(probe.method, probe.path(dummy)) for probe in PROBES}
    for method in ("GET", "PATCH"):
        assert (method, f"{ME}/admins/{dummy.b.admin_id('owner')}") in routes
    assert ("POST", f"{ME}/admins/{dummy.b.admin_id('owner')}/deactivate") in routes
    assert ("DELETE", f"/api/v1/auth/sessions/{dummy.b.session_id('owner')}") in routes
    for method, path in (("GET", ME), ("PATCH", ME), ("GET", f"{ME}/admins"), ("POST", f"{ME}/admins")):
        assert (method, path) in routes
    assert ("GET", f"{ME}/audit-logs") in routes


def _dummy_ctx() -> Ctx:
    ids = iter(uuid.UUID(int=n) for n in range(1, 100))
    tenant = TenantRef(next(ids), "alpha", "Alpha")
    world = TenantWorld(tenant, *(AdminRef(next(ids), tenant.id, f"{r}@alpha.test", r) for r in ROLES))
    other = Other(
        tenant_id=next(ids),
        slug="bravo",
        name="Bravo",
        admins={role: (next(ids), f"{role}@bravo.test", role) for role in ROLES},
        sessions={role: (next(ids), "jti") for role in ROLES},
    )
    return Ctx(a=world, b=other)


def test_the_leak_detector_and_snapshot_see_tenant_b_in_b_own_answers(api, raw_db, ctx):
    # Control: the same checks fail when B's data is in the answer, so they are not vacuous.
    b_owner = AdminRef(ctx.b.admins["owner"][0], ctx.b.tenant_id, ctx.b.email("owner"), "owner")
    token = api.login(b_owner)["access_token"]
    before = snapshot_of(raw_db, ctx.b.tenant_id)
    for path in (ME, f"{ME}/admins", f"{ME}/audit-logs"):
        with pytest.raises(AssertionError, match="leaked"):
            assert_nothing_of(ctx.b, api.get(path, token=token))
    assert api.patch(ME, token=token, json={"settings": {"changed": True}}).status_code == 200
    assert snapshot_of(raw_db, ctx.b.tenant_id) != before


# --- 404 means "not yours" and "does not exist" alike ----------------------------


@pytest.mark.parametrize("method", ["GET", "PATCH", "DEACTIVATE"])
@pytest.mark.parametrize("role", ROLES)
def test_another_tenants_admin_is_indistinguishable_from_a_missing_one(api, ctx, method, role):
    token = api.login(ctx.a.by_role(role))["access_token"]
    body = {"full_name": "Probe"} if method == "PATCH" else None
    answers = []
    for target in (ctx.b.admin_id("owner"), str(uuid.uuid4())):
        path = f"{ME}/admins/{target}/deactivate" if method == "DEACTIVATE" else f"{ME}/admins/{target}"
        response = api.request("POST" if method == "DEACTIVATE" else method, path, token=token, json=body)
        error = error_of(response)
        answers.append((response.status_code, error["code"], error["message"], error["details"]))
    assert answers[0] == answers[1]
    # A viewer may change no admin at all: refused before any lookup, for every id.
    assert answers[0][0] == (403 if role == "viewer" and method != "GET" else 404)


# --- tokens that mix the tenants ---------------------------------------------------


@pytest.mark.parametrize(
    "mix",
    [
        "b-tenant-claim-with-a-session-and-admin",
        "a-tenant-claim-with-b-session-and-admin",
        "b-tenant-claim-with-b-session-and-a-admin",
        "a-tenant-claim-with-a-session-and-b-admin",
    ],
)
def test_a_token_whose_claims_mix_tenants_is_refused(app, api, raw_db, ctx, mix):
    # Defence in depth: even a correctly signed token cannot pair one tenant's
    # claim with another tenant's session or admin.
    api.login(ctx.a.owner)
    a_session = raw_db.execute(
        "SELECT id FROM auth_sessions WHERE admin_id = %s ORDER BY created_at DESC LIMIT 1", (ctx.a.owner.id,)
    ).fetchone()[0]
    a = {"tid": ctx.a.tenant.id, "sid": a_session, "sub": ctx.a.owner.id}
    b = {"tid": ctx.b.tenant_id, "sid": ctx.b.sessions["owner"][0], "sub": ctx.b.admins["owner"][0]}
    tid_from, sid_from, sub_from = {
        "b-tenant-claim-with-a-session-and-admin": (b, a, a),
        "a-tenant-claim-with-b-session-and-admin": (a, b, b),
        "b-tenant-claim-with-b-session-and-a-admin": (b, b, a),
        "a-tenant-claim-with-a-session-and-b-admin": (a, a, b),
    }[mix]
    with app.app_context():
        token = create_access_token(
            str(sub_from["sub"]), additional_claims={"tid": str(tid_from["tid"]), "sid": str(sid_from["sid"])}
        )
    before = snapshot_of(raw_db, ctx.b.tenant_id)
    for method, path in (("GET", ME), ("GET", f"{ME}/admins"), ("PATCH", ME)):
        body = {"name": "Taken Over"} if method == "PATCH" else None
        response = api.request(method, path, token=token, json=body)
        assert response.status_code == 401
        assert error_of(response)["code"] == "token_revoked"
        assert_nothing_of(ctx.b, response)
    assert snapshot_of(raw_db, ctx.b.tenant_id) == before


# --- generated: B's identifiers anywhere in the query string and headers ------------

B_FIELDS = ("tenant_id", "slug", "name", "owner_id", "owner_email", "session_id")
PARAM_NAMES = ("tenant_id", "tenant", "user_id", "id", "admin_id", "org", "resource_id", "email")
HEADER_NAMES = ("X-Tenant-ID", "X-Tenant", "X-Forwarded-Host", "X-Org-ID", "X-Original-URL", "Forwarded")


def _b_value(other: Other, name: str) -> str:
    return {
        "tenant_id": str(other.tenant_id),
        "slug": other.slug,
        "name": other.name,
        "owner_id": other.admin_id("owner"),
        "owner_email": other.email("owner"),
        "session_id": other.session_id("owner"),
    }[name]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    role=st.sampled_from(ROLES),
    path=st.sampled_from([ME, f"{ME}/admins", f"{ME}/audit-logs", "/api/v1/auth/sessions"]),
    params=st.dictionaries(st.sampled_from(PARAM_NAMES), st.sampled_from(B_FIELDS), max_size=3),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), st.sampled_from(B_FIELDS), max_size=3),
)
def test_generated_reads_naming_tenant_b_never_leak(api, raw_db, ctx, role, path, params, headers):
    # Read-only requests: B's rows must still be unchanged after every example.
    tokens = ctx.extra.setdefault("tokens", {})
    if role not in tokens:
        tokens[role] = api.login(ctx.a.by_role(role))["access_token"]
    before = ctx.extra.setdefault("before", snapshot_of(raw_db, ctx.b.tenant_id))
    response = api.get(
        path,
        token=tokens[role],
        query_string={name: _b_value(ctx.b, value) for name, value in params.items()},
        headers={name: _b_value(ctx.b, value) for name, value in headers.items()},
    )
    # A B id given as the audit user_id filter is an empty page, never B's rows.
    allowed = {200, 422} | ({403} if path.endswith("audit-logs") and role == "viewer" else set())
    assert response.status_code in allowed, response.get_json()
    assert_nothing_of(ctx.b, response)
    if path == ME and response.status_code == 200:
        assert response.get_json()["id"] == str(ctx.a.tenant.id)
    assert snapshot_of(raw_db, ctx.b.tenant_id) == before
