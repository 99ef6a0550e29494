"""Tenants: reading and changing the caller's tenant, creating tenants (operators)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from wafaa.errors import Conflict, ValidationFailed
from wafaa.extensions import db
from wafaa.models import AdminEmail, AdminRole, AuthSession, SubscriptionTier, Tenant, TenantAdmin, TenantSlug
from wafaa.passwords import hash_password
from wafaa.schemas.tenant import settings_problem
from wafaa.services.queries import get_or_404, no_precondition
from wafaa.services.sessions import revoke_sessions


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7396): objects merge key by key, null removes a key,
    anything else replaces the target."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def update_tenant(
    tenant: Tenant, changes: dict[str, Any], precondition: Callable[[Tenant], None] = no_precondition
) -> Tenant:
    # Lock and re-read the row first: two concurrent merge patches must both land,
    # and the audit row must record the true "before". The client's precondition
    # (If-Match, wafaa.etags) is checked against the row as it is under the lock.
    tenant = get_or_404(Tenant, tenant.id, for_update=True)
    precondition(tenant)
    if "name" in changes:
        tenant.name = changes["name"]
    if "settings" in changes:
        merged = merge_patch(tenant.settings, changes["settings"])
        problem = settings_problem(merged)
        if problem:
            raise ValidationFailed(details={"json": {"settings": [problem]}})
        tenant.settings = merged
    return tenant


# --- operators (CLI): these run in the system scope -----------------------------


# Through the registries (wafaa.models.registry): one small table each, on every
# node, rather than a look at every tenant's shard.
def slug_taken(slug: str) -> bool:
    return db.session.get(TenantSlug, slug) is not None


def email_taken(email: str) -> bool:
    return db.session.get(AdminEmail, email) is not None


def create_tenant(
    *,
    name: str,
    slug: str,
    subscription_tier: SubscriptionTier,
    owner_email: str,
    owner_name: str,
    owner_password: str,
) -> Tenant:
    """A tenant and its first owner. Refuses a slug or an email already in use."""
    if slug_taken(slug):
        raise Conflict(f"A tenant with slug {slug!r} already exists.")
    if email_taken(owner_email):
        raise Conflict(f"An admin with email {owner_email!r} already exists.")
    tenant = Tenant(id=uuid.uuid4(), name=name, slug=slug, subscription_tier=subscription_tier)
    db.session.add(tenant)
    db.session.add(
        TenantAdmin(
            tenant_id=tenant.id,
            email=owner_email,
            full_name=owner_name,
            role=AdminRole.OWNER,
            password_hash=hash_password(owner_password),
        )
    )
    return tenant


def set_tenant_active(tenant: Tenant, active: bool) -> int:
    """Activate or deactivate a tenant; deactivation revokes all its sessions."""
    tenant.is_active = active
    if active:
        return 0
    return revoke_sessions(AuthSession.tenant_id == tenant.id, reason="tenant_deactivated")
