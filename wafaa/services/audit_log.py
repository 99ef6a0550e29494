"""Reading the audit log of the caller's tenant."""

from __future__ import annotations

from sqlalchemy import select

from wafaa.models import AuditLog
from wafaa.services.queries import page_of


def list_audit_logs(*, page: int, page_size: int, **filters) -> dict:
    statement = select(AuditLog).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    for name in ("action", "resource_type", "user_id"):
        if filters.get(name) is not None:
            statement = statement.where(getattr(AuditLog, name) == filters[name])
    if filters.get("since") is not None:
        statement = statement.where(AuditLog.created_at >= filters["since"])
    if filters.get("until") is not None:
        statement = statement.where(AuditLog.created_at < filters["until"])
    return page_of(statement, page, page_size)
