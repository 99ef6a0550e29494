"""Reading the audit log of the caller's tenant."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import select, text, tuple_

from wafaa import audit
from wafaa.errors import ValidationFailed
from wafaa.extensions import db
from wafaa.models import AuditLog
from wafaa.schemas.audit import cursor_of
from wafaa.services.queries import page_of

_PURGE = text(
    """
    WITH purged AS (DELETE FROM audit_logs WHERE created_at < :cutoff RETURNING tenant_id)
    SELECT tenant_id, count(*) FROM purged GROUP BY tenant_id
    """
)


def session_reference(session_id: str) -> str:
    """A stable stand-in for a session id: the same session always gets the same
    reference (entries can be matched up), but it cannot be turned back into the
    id, which together with a signing key would make a token of that session."""
    key = current_app.config["SECRET_KEY"].encode()
    return "ref-" + hmac.new(key, f"session:{session_id}".encode(), hashlib.sha256).hexdigest()[:24]


def _for_viewer(entry: AuditLog, reveal_sessions: bool) -> AuditLog | dict:
    if reveal_sessions or entry.resource_type != "session" or entry.resource_id is None:
        return entry
    fields = {c.key: getattr(entry, c.key) for c in AuditLog.__table__.columns}
    return {**fields, "resource_id": session_reference(entry.resource_id)}


def list_audit_logs(*, page: int, page_size: int, reveal_sessions: bool = False, **filters) -> dict:
    """One page of the tenant's log. Session ids are shown as references unless
    `reveal_sessions` (owners)."""
    result = _list_audit_logs(page=page, page_size=page_size, **filters)
    result["items"] = [_for_viewer(entry, reveal_sessions) for entry in result["items"]]
    return result


def _list_audit_logs(*, page: int, page_size: int, after=None, before=None, **filters) -> dict:
    """Newest first. Offset pages (`page`) shift as entries are added; a cursor
    (`after` an entry, or `before` one, or both for the entries between) is a
    position in (created_at, id), so the next page starts exactly where the last
    one ended. `page` with a cursor counts pages from the cursor."""
    position = tuple_(AuditLog.created_at, AuditLog.id)
    newest_first = (AuditLog.created_at.desc(), AuditLog.id.desc())
    statement = select(AuditLog)
    for name in ("action", "resource_type", "user_id"):
        if filters.get(name) is not None:
            statement = statement.where(getattr(AuditLog, name) == filters[name])
    if filters.get("since") is not None:
        statement = statement.where(AuditLog.created_at >= filters["since"])
    if filters.get("until") is not None:
        statement = statement.where(AuditLog.created_at < filters["until"])
    if before is not None:
        statement = statement.where(position > tuple_(*before))
    if after is not None:
        # Older than `after` (and newer than `before`, if given: the entries between).
        result = page_of(statement.where(position < tuple_(*after)).order_by(*newest_first), page, page_size)
        more = page < result["pages"]
    elif before is not None:
        # The entries just newer than the cursor: oldest first, then turned round.
        result = page_of(statement.order_by(AuditLog.created_at, AuditLog.id), page, page_size)
        result["items"].reverse()
        more = True  # older entries exist: the cursor's own
    else:
        result = page_of(statement.order_by(*newest_first), page, page_size)
        more = page < result["pages"]
    items = result["items"]
    if after is not None or before is not None:
        result["page"] = result["pages"] = None  # a cursor has no page number
    result["next_cursor"] = cursor_of(items[-1].created_at, items[-1].id) if items and more else None
    result["previous_cursor"] = cursor_of(items[0].created_at, items[0].id) if items else None
    return result


def purge_audit_logs(cutoff: datetime | None = None) -> tuple[datetime, Counter]:
    """Delete audit entries older than `cutoff` (default: AUDIT_RETENTION_DAYS
    ago) in every tenant, and record in each tenant's log what was removed.
    Operators only: runs in the system scope."""
    now = datetime.now(UTC)
    cutoff = cutoff or now - timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"])
    if cutoff > now:
        raise ValidationFailed("The cut-off date is in the future: nothing newer than now can be purged.")
    deleted = Counter(dict(db.session.execute(_PURGE, {"cutoff": cutoff}).all()))
    for tenant_id, count in deleted.items():
        audit.record(
            "audit.purged",
            tenant_id=tenant_id,
            resource_type="audit_log",
            details={"before": cutoff.isoformat(), "deleted": count},
        )
    return cutoff, deleted
