"""Who may do what inside a tenant. Every role rule of the service lives here.

Roles, from most to least powerful: owner, admin, viewer.

* Everyone may read the tenant and its admins.
* Owners and admins may change the tenant and read the audit log; only owners
  see the session ids in it (admins get references that cannot be used).
* Owners manage every admin; admins manage admins and viewers, never owners
  (they can neither create, change, promote to nor deactivate an owner).
* Viewers change nothing.

A failed check raises Forbidden (403). Whether a resource exists in the caller's
tenant is decided earlier, by the tenant-scoped lookup (404), so a 403 never
confirms the existence of another tenant's data.
"""

from __future__ import annotations

from wafaa.errors import Forbidden
from wafaa.models import AdminRole, TenantAdmin

MANAGERS = frozenset({AdminRole.OWNER, AdminRole.ADMIN})


def require_manager(actor: TenantAdmin) -> None:
    """Changing the tenant or reading its audit log: owners and admins."""
    if actor.role not in MANAGERS:
        raise Forbidden("Only owners and admins can do this.")


def require_can_assign(actor: TenantAdmin, role: AdminRole) -> None:
    """Creating an admin with `role`, or giving an admin that role."""
    require_manager(actor)
    if role is AdminRole.OWNER and actor.role is not AdminRole.OWNER:
        raise Forbidden("Only owners can create or promote owners.")


def require_can_manage(actor: TenantAdmin, target: TenantAdmin) -> None:
    """Changing or deactivating `target`."""
    require_manager(actor)
    if target.role is AdminRole.OWNER and actor.role is not AdminRole.OWNER:
        raise Forbidden("Only owners can manage owners.")


def may_see_session_ids(actor: TenantAdmin) -> bool:
    """A session id with a leaked signing key makes a token of that session: only
    owners, who could act as anyone of the tenant anyway, see them."""
    return actor.role is AdminRole.OWNER
