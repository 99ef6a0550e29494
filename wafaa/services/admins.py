"""Tenant admins: listing, creating, changing and deactivating, with the role rules."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from wafaa.errors import Conflict
from wafaa.extensions import db
from wafaa.models import AdminRole, TenantAdmin
from wafaa.passwords import hash_password
from wafaa.permissions import require_can_assign, require_can_manage
from wafaa.services.queries import get_or_404, page_of
from wafaa.services.sessions import revoke_admin_sessions

DUPLICATE_EMAIL = "An admin with this email already exists."


def list_admins(*, page: int, page_size: int, role: AdminRole | None = None, is_active: bool | None = None) -> dict:
    statement = select(TenantAdmin).order_by(TenantAdmin.created_at, TenantAdmin.id)
    if role is not None:
        statement = statement.where(TenantAdmin.role == role)
    if is_active is not None:
        statement = statement.where(TenantAdmin.is_active.is_(is_active))
    return page_of(statement, page, page_size)


def create_admin(actor: TenantAdmin, data: dict[str, Any]) -> TenantAdmin:
    require_can_assign(actor, data["role"])
    admin = TenantAdmin(
        id=uuid.uuid4(),
        email=data["email"],
        full_name=data["full_name"],
        role=data["role"],
        password_hash=hash_password(data["password"]),
    )
    db.session.add(admin)
    try:
        # Emails are unique across all tenants, and row-level security hides the
        # other tenants' admins from any pre-check: the constraint is the check.
        db.session.flush()
    except IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) == "23505":
            raise Conflict(DUPLICATE_EMAIL) from None
        raise
    return admin


def _active_owner_ids() -> set[uuid.UUID]:
    # FOR UPDATE: two owners demoting each other at once must not both succeed.
    return set(
        db.session.scalars(
            select(TenantAdmin.id)
            .where(TenantAdmin.role == AdminRole.OWNER, TenantAdmin.is_active.is_(True))
            .with_for_update()
        )
    )


def _keep_an_owner(target: TenantAdmin, new_role: AdminRole, new_active: bool) -> None:
    if target.role is not AdminRole.OWNER or not target.is_active:
        return
    if new_role is AdminRole.OWNER and new_active:
        return
    if _active_owner_ids() <= {target.id}:
        raise Conflict("A tenant must keep at least one active owner.")


def update_admin(actor: TenantAdmin, admin_id: uuid.UUID, changes: dict[str, Any]) -> TenantAdmin:
    target = get_or_404(TenantAdmin, admin_id, for_update=True)
    require_can_manage(actor, target)
    new_role = changes.get("role", target.role)
    new_active = changes.get("is_active", target.is_active)
    if new_role is not target.role:
        require_can_assign(actor, new_role)
    _keep_an_owner(target, new_role, new_active)
    was_active = target.is_active
    for field in ("full_name", "role", "is_active"):
        if field in changes:
            setattr(target, field, changes[field])
    if was_active and not target.is_active:
        revoke_admin_sessions(target.id, reason="admin_deactivated")
    return target


def deactivate_admin(actor: TenantAdmin, admin_id: uuid.UUID) -> TenantAdmin:
    return update_admin(actor, admin_id, {"is_active": False})


def set_password(admin: TenantAdmin, password: str) -> int:
    """Change an admin's password; every session of theirs is revoked."""
    admin.password_hash = hash_password(password)
    return revoke_admin_sessions(admin.id, reason="password_changed")
