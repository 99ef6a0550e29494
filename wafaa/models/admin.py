"""A tenant admin: a member of a tenant's staff who logs in to manage it."""

import enum
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

import idna
from sqlalchemy import (
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wafaa.models.base import TenantScoped, Timestamps, UUIDPrimaryKey, db, pg_enum

if TYPE_CHECKING:
    from wafaa.models.registry import AdminEmail
    from wafaa.models.tenant import Tenant


class AdminRole(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    VIEWER = "viewer"


def normalize_email(email: str) -> str:
    """The one canonical form of an email address: NFKC (full-width and other
    compatibility forms folded), trimmed, lower-case, the domain in its IDNA
    (ASCII) form. Total: an address that cannot be put in that form is returned
    folded as far as it goes, and simply matches nobody (creation refuses it:
    wafaa.identities.email_problem)."""
    email = unicodedata.normalize("NFKC", email).strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not domain:
        return email
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        pass
    return f"{local}@{domain}"


class TenantAdmin(UUIDPrimaryKey, TenantScoped, Timestamps, db.Model):
    __tablename__ = "tenant_admins"
    __audit_resource__ = "admin"
    # Bookkeeping that changes on every login is not an admin change; logins and
    # lockouts have audit actions of their own.
    __audit_ignore__ = frozenset({"created_at", "updated_at", "last_login"})
    # Recorded as "changed", never with a value.
    __audit_secret__ = frozenset({"password_hash"})
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "id", name="pk_tenant_admins"),
        # Emails are unique across all tenants (login is by email alone): each is
        # registered in admin_emails (wafaa.models.registry) under this tenant, and
        # unique within the tenant here. They are stored normalised, so the
        # constraints are case-insensitive.
        ForeignKeyConstraint(
            ["tenant_id", "email"],
            ["admin_emails.tenant_id", "admin_emails.email"],
            name="fk_tenant_admins_tenant_id_email_admin_emails",
        ),
        UniqueConstraint("tenant_id", "email", name="uq_tenant_admins_tenant_id_email"),
        CheckConstraint("email = lower(btrim(email))", name="email_normalized"),
        CheckConstraint("position('@' in email) > 1", name="email_has_at"),
        CheckConstraint("length(btrim(full_name)) > 0", name="full_name_not_blank"),
        Index("ix_tenant_admins_tenant_id_created_at", "tenant_id", "created_at"),
    )

    # The primary key (tenant_id, id) is the target of the composite foreign keys
    # that keep a session's or an audit row's admin inside the same tenant.
    __mapper_args__ = {"eager_defaults": True, "primary_key": ["id"]}

    email: Mapped[str] = mapped_column(String(255))
    # Deferred: the request role may not read it (column privileges, migration
    # 0005), so no ordinary query asks for it; login compares it inside the
    # database (wafaa/sql/login.sql).
    password_hash: Mapped[str] = mapped_column(String(255), deferred=True)
    full_name: Mapped[str] = mapped_column(String(255))
    role: Mapped[AdminRole] = mapped_column(pg_enum(AdminRole, "admin_role"))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_login: Mapped[datetime | None]

    tenant: Mapped["Tenant"] = relationship(back_populates="admins")
    # Never loaded: it makes the unit of work insert the registration first.
    email_registration: Mapped["AdminEmail"] = relationship(lazy="raise", overlaps="tenant,admins")

    def __repr__(self) -> str:
        return f"<TenantAdmin {self.id} {self.role.value}>"
