"""Writing audit events: automatically for model changes, explicitly for auth events.

An `after_flush` listener turns every insert, update and delete of an audited model
(one that declares `__audit_resource__`) into an `AuditLog` row. The rows are
flushed by the same commit, in the same transaction: the change and its audit row
commit or roll back together, and no view has to remember to log anything.
(After the flush, not before: new rows then have their ids and defaults, and the
attribute history still holds the values before the change.) Auth events, which change no audited model in a
way worth recording (`auth.login`, `auth.logout`, ...), are written with `record()`.

Every tenant-scoped model declares its audit: `__audit_resource__` (audited), or
`__audit_exempt__ = "<why>"`; wafaa.schema_check fails for a model with neither.
Details hold the changed fields before and after. Fields listed in
`__audit_secret__` are reported as changed, never with a value; fields in
`__audit_ignore__` (timestamps, login bookkeeping) are not reported at all.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import uuid
from datetime import date, datetime
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session

from wafaa.extensions import db
from wafaa.logging import current_request_id
from wafaa.models import AuditLog, Tenant

# The actions the service writes, for documentation and the audit-log filter.
ACTIONS = (
    "tenant.created",
    "tenant.updated",
    "tenant.deactivated",
    "tenant.reactivated",
    "admin.created",
    "admin.updated",
    "admin.deactivated",
    "admin.reactivated",
    "admin.password_changed",
    "admin.email_released",
    "admin.create_refused",
    "auth.login",
    "auth.login_failed",
    "auth.login_throttled",
    "auth.login_unlocked",
    "auth.account_locked",  # written before throttling per source replaced locking (0006)
    "auth.logout",
    "auth.session_revoked",
    "auth.refresh_grace_replay",
    "auth.refresh_reuse_detected",
    "audit.purged",
)


def client_ip() -> str | None:
    # request.remote_addr already accounts for X-Forwarded-For when (and only
    # when) TRUSTED_PROXY_COUNT > 0: see ProxyFix in create_app.
    if not has_request_context() or not request.remote_addr:
        return None
    return request.remote_addr[:45]


def client_source() -> str:
    """The client as a source of requests: its IPv4 address, or its IPv6 network
    of RATELIMIT_IPV6_PREFIX bits (one host usually holds a whole /64, and
    would otherwise have 2**64 addresses to rotate through)."""
    address = client_ip()
    if address is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        prefix = current_app.config["RATELIMIT_IPV6_PREFIX"]
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    return str(ip)


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def record(
    action: str,
    *,
    tenant_id: uuid.UUID,
    resource_type: str,
    resource_id: uuid.UUID | str | None = None,
    details: dict[str, Any] | None = None,
    actor_id: uuid.UUID | None = None,
) -> AuditLog:
    """Add one audit row to the current unit of work (committed with it)."""
    row = AuditLog(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        user_id=actor_id if actor_id is not None else g.get("user_id"),
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        details=_capped(with_context(details)),
        ip_address=client_ip(),
    )
    db.session.add(row)
    return row


def with_context(details: dict[str, Any] | None = None) -> dict[str, Any]:
    """An audit row's details plus where the change came from (request id, or CLI)."""
    if has_request_context():
        return {**(details or {}), "request_id": current_request_id()}
    return {**(details or {}), "via": "cli"}


def _tenant_of(obj: Any) -> uuid.UUID:
    return obj.id if isinstance(obj, Tenant) else obj.tenant_id


def _audited_fields(obj: Any) -> list[str]:
    ignored = getattr(obj, "__audit_ignore__", frozenset())
    return [attr.key for attr in inspect(obj).mapper.column_attrs if attr.key not in ignored]


def _snapshot(obj: Any) -> dict[str, Any]:
    secret = getattr(obj, "__audit_secret__", frozenset())
    return {name: _jsonable(getattr(obj, name)) for name in _audited_fields(obj) if name not in secret}


def _changes(obj: Any) -> dict[str, Any]:
    state = inspect(obj)
    secret = getattr(obj, "__audit_secret__", frozenset())
    changes: dict[str, Any] = {}
    for name in _audited_fields(obj):
        history = state.attrs[name].history
        if not history.has_changes():
            continue
        before = history.deleted[0] if history.deleted else None
        after = history.added[0] if history.added else None
        if before == after:
            continue
        if name in secret:
            changes[name] = "changed"
        elif isinstance(before, dict) and isinstance(after, dict):
            changes[name] = _changed_keys(before, after)
        else:
            changes[name] = {"before": _jsonable(before), "after": _jsonable(after)}
    return changes


def _changed_keys(before: dict, after: dict) -> dict[str, Any]:
    """A JSON object's change as the keys that changed, with their values before
    and after (absent: not there), not the whole object twice."""
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k, _ABSENT) != after.get(k, _ABSENT))
    return {
        "changed_keys": keys,
        "before": {k: before[k] for k in keys if k in before},
        "after": {k: after[k] for k in keys if k in after},
    }


_ABSENT = object()
# How many field or key names a cut row keeps.
_KEPT_NAMES = 50


def _capped(details: dict[str, Any]) -> dict[str, Any]:
    """Details within AUDIT_DETAILS_MAX_BYTES: beyond it, the values go and the
    names of what changed stay, marked `"truncated": true`."""
    limit = current_app.config["AUDIT_DETAILS_MAX_BYTES"]
    if len(json.dumps(details, default=str, ensure_ascii=False).encode()) <= limit:
        return details
    cut: dict[str, Any] = {k: v for k, v in details.items() if isinstance(v, str) and len(v) <= 100}
    for key in ("before", "after"):  # snapshots of a created or deleted row
        if isinstance(details.get(key), dict):
            cut[key] = {"fields": sorted(details[key])[:_KEPT_NAMES]}
    if isinstance(details.get("changes"), dict):
        cut["changes"] = {
            field: {"changed_keys": change["changed_keys"][:_KEPT_NAMES]}
            if isinstance(change, dict) and "changed_keys" in change
            else "changed"
            for field, change in list(details["changes"].items())[:_KEPT_NAMES]
        }
    cut["truncated"] = True
    return cut


def _update_action(resource: str, obj: Any, changes: dict[str, Any]) -> str:
    if resource == "admin" and "email" in changes:
        # An admin's email changes only when an operator releases it.
        return "admin.email_released"
    if "is_active" in changes:
        return f"{resource}.deactivated" if not obj.is_active else f"{resource}.reactivated"
    secret = getattr(obj, "__audit_secret__", frozenset())
    if set(changes) <= secret:
        return f"{resource}.password_changed"
    return f"{resource}.updated"


class AuditBypassError(RuntimeError):
    """A bulk INSERT, UPDATE or DELETE of an audited model would change rows unaudited."""


def _refuse_unaudited_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    audited = [m.class_.__name__ for m in state.all_mappers if hasattr(m.class_, "__audit_resource__")]
    if audited:
        raise AuditBypassError(f"bulk change of audited {', '.join(audited)}: add, load and change the objects instead")


def _audit_flush(session: Session, flush_context) -> None:
    for obj in list(session.new):
        resource = getattr(obj, "__audit_resource__", None)
        if resource is None:
            continue
        record(
            f"{resource}.created",
            tenant_id=_tenant_of(obj),
            resource_type=resource,
            resource_id=obj.id,
            details={"after": _snapshot(obj)},
        )
    for obj in list(session.dirty):
        resource = getattr(obj, "__audit_resource__", None)
        if resource is None or not session.is_modified(obj, include_collections=False):
            continue
        changes = _changes(obj)
        if not changes:
            continue
        record(
            _update_action(resource, obj, changes),
            tenant_id=_tenant_of(obj),
            resource_type=resource,
            resource_id=obj.id,
            details={"changes": changes},
        )
    for obj in list(session.deleted):
        resource = getattr(obj, "__audit_resource__", None)
        # No model is deleted through the API today (admins and tenants are
        # deactivated); this serves the tenant data of later phases. A deleted
        # tenant takes its audit log with it (ON DELETE CASCADE): there is no
        # tenant left to file a row under.
        if resource is None or isinstance(obj, Tenant):
            continue
        record(
            f"{resource}.deleted",
            tenant_id=_tenant_of(obj),
            resource_type=resource,
            resource_id=obj.id,
            details={"before": _snapshot(obj)},
        )


def init_app(app: Flask) -> None:
    # db.session is shared by every app of the process: listen once, not once per
    # create_app (tests create several apps; twice would mean two audit rows).
    for name, listener in (("after_flush", _audit_flush), ("do_orm_execute", _refuse_unaudited_bulk_changes)):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)
