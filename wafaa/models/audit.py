"""The audit log: one append-only row per change of tenant data or auth event."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Index, PrimaryKeyConstraint, String, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wafaa.models.base import EMPTY_JSONB, TenantScoped, UUIDPrimaryKey, db


class AuditLog(UUIDPrimaryKey, TenantScoped, db.Model):
    __tablename__ = "audit_logs"
    __audit_exempt__ = "the audit log itself"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "id", name="pk_audit_logs"),
        # The actor, when there is one, is an admin of the same tenant. NO ACTION
        # (checked at the end of the statement) lets a tenant's deletion cascade to
        # its admins and its audit rows together, while an admin can never be
        # deleted out from under the audit rows that name them.
        ForeignKeyConstraint(
            ["tenant_id", "user_id"],
            ["tenant_admins.tenant_id", "tenant_admins.id"],
            ondelete="NO ACTION",
            name="fk_audit_logs_tenant_id_user_id_tenant_admins",
        ),
        Index("ix_audit_logs_tenant_id_created_at", "tenant_id", "created_at"),
        # Failed logins of one account in the lockout window (wafaa/sql/login.sql).
        Index(
            "ix_audit_logs_tenant_id_resource_id_created_at_login_failed",
            "tenant_id",
            "resource_id",
            "created_at",
            postgresql_where=text("action = 'auth.login_failed'"),
        ),
    )

    __mapper_args__ = {"primary_key": ["id"]}

    user_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_JSONB)
    # 45 characters hold the longest textual IPv6 address (IPv4-mapped form).
    ip_address: Mapped[str | None] = mapped_column(String(45))
    # clock_timestamp(), not now(): rows written by one transaction keep the order
    # in which they were written (now() is the same for the whole transaction).
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())

    # Never loaded; it tells the unit of work to insert a new tenant before the
    # audit row that records its creation (a bare foreign key does not).
    tenant = relationship("Tenant", lazy="raise")

    def __repr__(self) -> str:
        return f"<AuditLog {self.action} {self.resource_type}:{self.resource_id}>"
