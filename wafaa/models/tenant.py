"""A tenant: one client business, the unit of isolation."""

import enum
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKeyConstraint, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wafaa.models.base import EMPTY_JSONB, Timestamps, UUIDPrimaryKey, db, pg_enum

if TYPE_CHECKING:
    from wafaa.models.admin import TenantAdmin
    from wafaa.models.registry import TenantSlug

SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"


class SubscriptionTier(enum.StrEnum):
    FREE = "free"
    BASIC = "basic"
    PREMIUM = "premium"


class Tenant(UUIDPrimaryKey, Timestamps, db.Model):
    """Scoped by its own `id` (see wafaa.tenancy), not by a tenant_id column."""

    __tablename__ = "tenants"
    __audit_resource__ = "tenant"
    __audit_ignore__ = frozenset({"created_at", "updated_at"})
    __table_args__ = (
        CheckConstraint(f"slug ~ '{SLUG_PATTERN}'", name="slug_format"),
        # Slugs are unique across tenants through their registry
        # (wafaa.models.registry): a unique constraint here could not hold on Citus.
        ForeignKeyConstraint(
            ["id", "slug"], ["tenant_slugs.tenant_id", "tenant_slugs.slug"], name="fk_tenants_id_slug_tenant_slugs"
        ),
        CheckConstraint("length(btrim(name)) > 0", name="name_not_blank"),
        CheckConstraint("jsonb_typeof(settings) = 'object'", name="settings_is_object"),
    )

    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(100))
    subscription_tier: Mapped[SubscriptionTier] = mapped_column(
        pg_enum(SubscriptionTier, "subscription_tier"),
        default=SubscriptionTier.FREE,
        server_default=SubscriptionTier.FREE.value,
    )
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_JSONB)

    admins: Mapped[list["TenantAdmin"]] = relationship(
        back_populates="tenant", order_by="TenantAdmin.created_at", passive_deletes=True
    )

    # Never loaded: it makes the unit of work insert the registration first.
    slug_registration: Mapped["TenantSlug"] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"<Tenant {self.slug}>"
