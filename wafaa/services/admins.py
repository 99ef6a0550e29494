"""Tenant admins: listing, creating, changing and deactivating, with the role rules."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from wafaa import audit
from wafaa.errors import ApiError, Conflict, Forbidden, TooManyRequests
from wafaa.extensions import db
from wafaa.models import AdminEmail, AdminRole, AuditLog, LoginThrottle, TenantAdmin
from wafaa.passwords import hash_password
from wafaa.permissions import require_can_assign, require_can_manage
from wafaa.services.queries import get_or_404, no_precondition, page_of
from wafaa.services.sessions import revoke_admin_sessions

DUPLICATE_EMAIL = "This email address cannot be used for a new admin."


def list_admins(*, page: int, page_size: int, role: AdminRole | None = None, is_active: bool | None = None) -> dict:
    statement = select(TenantAdmin).order_by(TenantAdmin.created_at, TenantAdmin.id)
    if role is not None:
        statement = statement.where(TenantAdmin.role == role)
    if is_active is not None:
        statement = statement.where(TenantAdmin.is_active.is_(is_active))
    return page_of(statement, page, page_size)


def create_admin(actor: TenantAdmin, data: dict[str, Any]) -> TenantAdmin:
    """Add an admin. Every refusal is recorded in the actor's tenant and stands,
    although the request fails: refusals because an email is in use tell that it
    exists somewhere (emails are unique across tenants), so they are few per
    tenant and hour, and the record shows who asked."""
    try:
        return _create_admin(actor, data)
    except (Forbidden, Conflict, TooManyRequests) as refusal:
        record_refused_creation(actor, refusal, {"email": data["email"], "role": data["role"].value})
        raise


def record_refused_creation(actor: TenantAdmin, refusal: ApiError, asked: dict | None = None) -> None:
    """The audit row of a refused creation, kept although the request fails.
    `asked` is what was asked for, when the body was read (a viewer is refused
    before: wafaa.api.Blueprint.managers_only)."""
    audit.record(
        "admin.create_refused",
        tenant_id=actor.tenant_id,
        resource_type="admin",
        details={"reason": _REFUSALS[type(refusal)], **(asked or {})},
    )
    refusal.keep_changes = True


_REFUSALS = {Forbidden: "forbidden", Conflict: "email_in_use", TooManyRequests: "too_many_refusals"}


def _email_refusals_this_hour() -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(AuditLog)
        .where(
            AuditLog.action == "admin.create_refused",
            AuditLog.details["reason"].astext == "email_in_use",
            AuditLog.created_at > func.now() - timedelta(hours=1),
        )
    )


def _create_admin(actor: TenantAdmin, data: dict[str, Any]) -> TenantAdmin:
    require_can_assign(actor, data["role"])
    if _email_refusals_this_hour() >= current_app.config["ADMIN_EMAIL_CONFLICTS_PER_HOUR"]:
        raise TooManyRequests("Too many admins refused for an email in use this hour. Retry later.", retry_after=3600)
    admin = TenantAdmin(
        id=uuid.uuid4(),
        email=data["email"],
        full_name=data["full_name"],
        role=data["role"],
        password_hash=hash_password(data["password"]),
    )
    try:
        # Emails are unique across all tenants, and row-level security hides the
        # other tenants' admins from any pre-check: the constraint is the check.
        # In a savepoint, so that the refusal can still be recorded.
        with db.session.begin_nested():
            db.session.add(admin)
            db.session.flush()
    except IntegrityError as error:
        if getattr(error.orig, "sqlstate", None) == "23505":
            # The same answer whether the address is this tenant's or another's,
            # and nothing about which tenant holds it.
            raise Conflict(DUPLICATE_EMAIL) from None
        raise
    return admin


def _lock_in_order(*admin_ids: uuid.UUID) -> None:
    """Lock every row a role change reads (the actor, the target, every active
    owner) in one statement, in id order. Two owners demoting each other at once
    then queue on the same first row instead of each holding what the other
    waits for (a deadlock); the second sees the first's change when it gets the
    locks."""
    db.session.execute(
        select(TenantAdmin.id)
        .where(
            or_(
                TenantAdmin.id.in_(admin_ids),
                and_(TenantAdmin.role == AdminRole.OWNER, TenantAdmin.is_active.is_(True)),
            )
        )
        .order_by(TenantAdmin.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE (wafaa.services.queries.get_or_404)
    ).all()


def _active_owner_ids() -> set[uuid.UUID]:
    # Already locked by _lock_in_order; read again, as they are now.
    return set(
        db.session.scalars(
            select(TenantAdmin.id).where(TenantAdmin.role == AdminRole.OWNER, TenantAdmin.is_active.is_(True))
        )
    )


def _keep_an_owner(target: TenantAdmin, new_role: AdminRole, new_active: bool) -> None:
    if target.role is not AdminRole.OWNER or not target.is_active:
        return
    if new_role is AdminRole.OWNER and new_active:
        return
    if _active_owner_ids() <= {target.id}:
        raise Conflict("A tenant must keep at least one active owner.")


def update_admin(
    actor: TenantAdmin,
    admin_id: uuid.UUID,
    changes: dict[str, Any],
    precondition: Callable[[TenantAdmin], None] = no_precondition,
) -> TenantAdmin:
    _lock_in_order(actor.id, admin_id)
    # The actor as they are now: a concurrent request may have just demoted them
    # (the other half of two owners demoting each other).
    current = db.session.get(TenantAdmin, actor.id, populate_existing=True)
    if current is None or not current.is_active or current.role is not actor.role:
        raise Conflict("Your own role changed while this request waited. Reload and retry.")
    target = get_or_404(TenantAdmin, admin_id, for_update=True)
    require_can_manage(actor, target)
    precondition(target)  # If-Match (wafaa.etags), against the row under its lock
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


def deactivate_admin(
    actor: TenantAdmin, admin_id: uuid.UUID, precondition: Callable[[TenantAdmin], None] = no_precondition
) -> TenantAdmin:
    return update_admin(actor, admin_id, {"is_active": False}, precondition)


def set_password(admin: TenantAdmin, password: str) -> int:
    """Change an admin's password; every session of theirs is revoked, and their
    failed logins are forgotten."""
    admin.password_hash = hash_password(password)
    _clear_throttles(admin, reason="password_changed")
    return revoke_admin_sessions(admin.id, reason="password_changed")


def _clear_throttles(admin: TenantAdmin, *, reason: str) -> int:
    cleared = db.session.execute(
        delete(LoginThrottle)
        .where(LoginThrottle.tenant_id == admin.tenant_id, LoginThrottle.admin_id == admin.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if cleared:
        audit.record(
            "auth.login_unlocked",
            tenant_id=admin.tenant_id,
            resource_type="admin",
            resource_id=admin.id,
            details={"reason": reason, "sources_cleared": cleared},
        )
    return cleared


def unlock_admin(admin: TenantAdmin) -> int:
    """Forget an admin's failed logins (operators: `flask admins unlock`). Recorded
    even when there was nothing to clear: someone asked."""
    cleared = _clear_throttles(admin, reason="unlocked")
    if not cleared:
        audit.record(
            "auth.login_unlocked",
            tenant_id=admin.tenant_id,
            resource_type="admin",
            resource_id=admin.id,
            details={"reason": "unlocked", "sources_cleared": 0},
        )
    return cleared


def release_email(admin: TenantAdmin) -> str:
    """Give up a deactivated admin's email address (operators: `flask admins
    release-email`): the admin row stays, with its history, under a placeholder
    that can never be an address anyone logs in with."""
    if admin.is_active:
        raise Conflict("The admin is active: deactivate them first (PATCH .../admins/{id} is_active=false).")
    released = admin.email
    admin.email = f"released-{admin.id.hex}@released.invalid"
    # The registration moves with the address (wafaa.models.registry): the new
    # one is inserted before the admin's row changes, the old one then freed.
    admin.email_registration = AdminEmail(email=admin.email, tenant_id=admin.tenant_id)
    db.session.flush()
    db.session.execute(delete(AdminEmail).where(AdminEmail.email == released))
    revoke_admin_sessions(admin.id, reason="email_released")
    return admin.email
