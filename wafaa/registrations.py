"""Every new tenant registers its slug, every new admin their email
(wafaa.models.registry), in the same flush: nothing else has to remember it.

Runs after wafaa.tenancy's flush listener, so that a new admin's tenant is
stamped. An email that changes later (`flask admins release-email`) moves its
registration in wafaa.services.admins.
"""

from __future__ import annotations

import uuid

from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from wafaa.extensions import db
from wafaa.models import AdminEmail, Tenant, TenantAdmin, TenantSlug


def _register_new(session: Session, flush_context, instances) -> None:
    for obj in list(session.new):
        if isinstance(obj, Tenant) and "slug_registration" not in obj.__dict__:
            if obj.id is None:  # the column default would come only at the insert, too late here
                obj.id = uuid.uuid4()
            obj.slug_registration = TenantSlug(slug=obj.slug, tenant_id=obj.id)
        elif isinstance(obj, TenantAdmin) and "email_registration" not in obj.__dict__:
            obj.email_registration = AdminEmail(email=obj.email, tenant_id=obj.tenant_id)


def init_app(app: Flask) -> None:
    # db.session is shared by every app of the process: listen once.
    if not event.contains(db.session, "before_flush", _register_new):
        event.listen(db.session, "before_flush", _register_new)
