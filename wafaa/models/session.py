"""A login session: one refresh-token family and the access tokens it issues."""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from wafaa.models.base import CreatedAt, TenantScoped, UUIDPrimaryKey, db


class AuthSession(UUIDPrimaryKey, TenantScoped, CreatedAt, db.Model):
    __tablename__ = "auth_sessions"
    __audit_exempt__ = "sessions are audited as auth.* events (login, logout, revocation, reuse)"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "id", name="pk_auth_sessions"),
        # Composite key: a session's admin always belongs to the session's tenant.
        ForeignKeyConstraint(
            ["tenant_id", "admin_id"],
            ["tenant_admins.tenant_id", "tenant_admins.id"],
            ondelete="CASCADE",
            name="fk_auth_sessions_tenant_id_admin_id_tenant_admins",
        ),
        Index("ix_auth_sessions_tenant_id_admin_id", "tenant_id", "admin_id"),
    )

    __mapper_args__ = {"primary_key": ["id"]}

    admin_id: Mapped[uuid.UUID]
    # The jti of the one refresh token that may be used next, and the one it
    # replaced (accepted again only within the reuse grace window).
    refresh_jti: Mapped[str] = mapped_column(String(64))
    previous_refresh_jti: Mapped[str | None] = mapped_column(String(64))
    rotated_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    def __repr__(self) -> str:
        return f"<AuthSession {self.id}>"
