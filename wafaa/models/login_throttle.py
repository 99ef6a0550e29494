"""Failed logins of one account from one source, for throttling (wafaa/sql/login.sql)."""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from wafaa.models.base import TenantScoped, db


class LoginThrottle(TenantScoped, db.Model):
    __tablename__ = "login_throttles"
    __audit_exempt__ = "login bookkeeping: the failures are audited as auth.login_failed, resets as their own events"
    __table_args__ = (
        # Leads with tenant_id: the rows of a tenant stay together (and on one
        # shard, distributed by tenant).
        PrimaryKeyConstraint("tenant_id", "admin_id", "source", name="pk_login_throttles"),
        ForeignKeyConstraint(
            ["tenant_id", "admin_id"],
            ["tenant_admins.tenant_id", "tenant_admins.id"],
            ondelete="CASCADE",
            name="fk_login_throttles_tenant_id_admin_id_tenant_admins",
        ),
    )

    admin_id: Mapped[uuid.UUID]
    # The client's address, an IPv6 one as its network (RATELIMIT_IPV6_PREFIX).
    source: Mapped[str] = mapped_column(String(49))
    # Wrong passwords from this source; forgotten once the last is older than
    # LOGIN_LOCKOUT_WINDOW_MINUTES.
    failures: Mapped[int]
    last_failed_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<LoginThrottle {self.admin_id} {self.source} {self.failures}>"
