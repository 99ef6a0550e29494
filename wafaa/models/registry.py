"""Registries of what must be unique across tenants: slugs and admin emails.

A unique constraint on `tenants.slug` or `tenant_admins.email` cannot be enforced
once those tables are split into shards by tenant (Citus: unique keys must include
the distribution column). Each value is registered here instead, in one small
table that is replicated to every node (a Citus reference table), whose primary key
is the value itself. The tenant's and the admin's rows point at their registration
with a composite foreign key, so the database still refuses a second tenant with a
slug in use or a second admin with an email in use; and login finds an email's
tenant here, then reads the admin on that tenant's node only.

The registrations are made by the unit of work (wafaa.registrations), never by
hand. Row-level security lets the request role read and register only its own
tenant's emails (creating an admin registers its email).
"""

import uuid

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wafaa.models.base import db


class TenantSlug(db.Model):
    __tablename__ = "tenant_slugs"
    __table_args__ = (UniqueConstraint("tenant_id", "slug", name="uq_tenant_slugs_tenant_id_slug"),)

    slug: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[uuid.UUID]

    def __repr__(self) -> str:
        return f"<TenantSlug {self.slug}>"


class AdminEmail(db.Model):
    __tablename__ = "admin_emails"
    __table_args__ = (UniqueConstraint("tenant_id", "email", name="uq_admin_emails_tenant_id_email"),)

    email: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[uuid.UUID]

    def __repr__(self) -> str:
        return f"<AdminEmail {self.tenant_id}>"
