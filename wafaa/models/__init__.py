"""All models, imported here so that metadata (and Alembic) sees every table."""

from wafaa.models.admin import AdminRole, TenantAdmin, normalize_email
from wafaa.models.audit import AuditLog
from wafaa.models.base import Base, TenantScoped
from wafaa.models.login_throttle import LoginThrottle
from wafaa.models.registry import AdminEmail, TenantSlug
from wafaa.models.session import AuthSession
from wafaa.models.tenant import SubscriptionTier, Tenant

__all__ = [
    "AdminEmail",
    "AdminRole",
    "AuditLog",
    "AuthSession",
    "Base",
    "LoginThrottle",
    "SubscriptionTier",
    "Tenant",
    "TenantAdmin",
    "TenantSlug",
    "TenantScoped",
    "normalize_email",
]
