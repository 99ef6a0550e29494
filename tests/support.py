"""Test helpers: data factories and an API client that logs in as a given admin."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from flask import Flask
from flask.testing import FlaskClient

from wafaa.extensions import db
from wafaa.models import AdminRole, SubscriptionTier, Tenant, TenantAdmin
from wafaa.passwords import hash_password
from wafaa.tenancy import system_scope

PASSWORD = "correct horse battery staple"
_sequence = itertools.count(1)


@dataclass(frozen=True)
class TenantRef:
    id: uuid.UUID
    slug: str
    name: str


@dataclass(frozen=True)
class AdminRef:
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: str
    password: str = PASSWORD


@dataclass
class TenantWorld:
    """A tenant with one admin of each role."""

    tenant: TenantRef
    owner: AdminRef
    admin: AdminRef
    viewer: AdminRef
    extra: dict = field(default_factory=dict)

    def by_role(self, role: str) -> AdminRef:
        return getattr(self, role)


class Factory:
    """Creates rows through the application's own models, in the system scope."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def tenant(
        self,
        *,
        slug: str | None = None,
        name: str | None = None,
        tier: SubscriptionTier = SubscriptionTier.FREE,
        is_active: bool = True,
        settings: dict | None = None,
    ) -> TenantRef:
        n = next(_sequence)
        slug = slug or f"tenant-{n}"
        name = name or f"Tenant {n}"
        with self.app.app_context(), system_scope("test factory"):
            tenant = Tenant(
                id=uuid.uuid4(),
                name=name,
                slug=slug,
                subscription_tier=tier,
                is_active=is_active,
                settings=settings or {},
            )
            db.session.add(tenant)
            db.session.commit()
            return TenantRef(tenant.id, slug, name)

    def admin(
        self,
        tenant: TenantRef,
        role: str = "owner",
        *,
        email: str | None = None,
        password: str = PASSWORD,
        is_active: bool = True,
        password_hash: str | None = None,
    ) -> AdminRef:
        n = next(_sequence)
        email = email or f"{role}-{n}@{tenant.slug}.test"
        with self.app.app_context(), system_scope("test factory"):
            admin = TenantAdmin(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                email=email,
                full_name=f"{role.title()} {n}",
                role=AdminRole(role),
                is_active=is_active,
                password_hash=password_hash or hash_password(password),
            )
            db.session.add(admin)
            db.session.commit()
            return AdminRef(admin.id, tenant.id, email, role, password)

    def world(self, **tenant_kwargs) -> TenantWorld:
        tenant = self.tenant(**tenant_kwargs)
        return TenantWorld(
            tenant=tenant,
            owner=self.admin(tenant, "owner"),
            admin=self.admin(tenant, "admin"),
            viewer=self.admin(tenant, "viewer"),
        )


class ApiClient:
    """The Flask test client plus login helpers. Requests go through the whole app."""

    def __init__(self, client: FlaskClient, factory: Factory) -> None:
        self.client = client
        self.factory = factory

    def login(self, admin: AdminRef, password: str | None = None) -> dict:
        response = self.client.post(
            "/api/v1/auth/login", json={"email": admin.email, "password": password or admin.password}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def headers(self, admin: AdminRef) -> dict:
        return {"Authorization": f"Bearer {self.login(admin)['access_token']}"}

    def request(self, method: str, path: str, admin: AdminRef | None = None, token: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif admin is not None:
            headers.update(self.headers(admin))
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, admin: AdminRef | None = None, **kwargs):
        return self.request("GET", path, admin, **kwargs)

    def post(self, path: str, admin: AdminRef | None = None, **kwargs):
        return self.request("POST", path, admin, **kwargs)

    def patch(self, path: str, admin: AdminRef | None = None, **kwargs):
        return self.request("PATCH", path, admin, **kwargs)

    def delete(self, path: str, admin: AdminRef | None = None, **kwargs):
        return self.request("DELETE", path, admin, **kwargs)


def error_of(response) -> dict:
    """The error envelope of a response, after checking its shape."""
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.get_json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"status", "code", "message", "details", "request_id"}, error
    assert error["status"] == response.status_code
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert "Error:" in result.output, result.output
    for fragment in fragments:
        assert fragment.lower() in result.output.lower(), result.output
