"""The caller's tenant, its admins and its audit log."""

import uuid

from flask import url_for
from flask.views import MethodView
from marshmallow import RAISE

from wafaa.api import Blueprint
from wafaa.etags import if_match, tagged
from wafaa.models import TenantAdmin
from wafaa.permissions import may_see_session_ids
from wafaa.schemas.admin import AdminCreateSchema, AdminListQuerySchema, AdminPageSchema, AdminSchema, AdminUpdateSchema
from wafaa.schemas.audit import AuditLogPageSchema, AuditLogQuerySchema
from wafaa.schemas.tenant import TenantSchema, TenantUpdateSchema
from wafaa.security import current_identity
from wafaa.services import admins, audit_log
from wafaa.services.queries import get_or_404
from wafaa.services.tenants import update_tenant

ETAG_HEADER = {"ETag": {"description": "The representation's tag, for `If-Match`", "schema": {"type": "string"}}}
IF_MATCH_PARAMETER = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": "The `ETag` of the resource as you read it: the change is refused (412) if it changed since",
    # Any text: a value that names no current tag (a stale one, or no tag at all)
    # is 412, as RFC 9110 says of an If-Match none of whose tags match.
    "schema": {"type": "string"},
}

# Schemas for the ETags: built once (a schema instance is only read when dumping,
# and building one deep-copies its fields: 5 % of a GET /tenants/me).
TENANT = TenantSchema()
ADMIN = AdminSchema()

blp = Blueprint(
    "tenants", __name__, url_prefix="/api/v1/tenants/me", description="Your tenant, its admins and audit log"
)


@blp.route("")
class CurrentTenant(MethodView):
    @blp.authenticated
    @blp.response(200, TenantSchema, headers=ETAG_HEADER)
    @blp.doc(operationId="get_tenant")
    def get(self):
        """Your tenant

        With an `ETag`: send it back as `If-Match` on PATCH so that a change made
        meanwhile by someone else is not overwritten (412 instead).
        """
        return tagged(TENANT, current_identity().tenant)

    @blp.authenticated
    @blp.managers_only
    @blp.arguments(TenantUpdateSchema)
    @blp.response(200, TenantSchema, headers=ETAG_HEADER)
    @blp.doc(parameters=[IF_MATCH_PARAMETER])
    @blp.errors(403, 412)
    @blp.doc(operationId="update_tenant")
    def patch(self, changes):
        """Change your tenant's name or settings (owner, admin)

        `settings` is a JSON Merge Patch: keys are merged into the current
        settings and a `null` value removes a key. No other field can change.
        With `If-Match`, applied only if the tenant is still as that tag says
        (412 otherwise).
        """
        identity = current_identity()
        return tagged(TENANT, update_tenant(identity.tenant, changes, if_match(TENANT)))


@blp.route("/admins")
class Admins(MethodView):
    @blp.authenticated
    @blp.arguments(AdminListQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, AdminPageSchema)
    @blp.doc(operationId="list_admins")
    def get(self, query):
        """List your tenant's admins, oldest first

        Filter by `role` or `is_active`; `page` and `page_size` page the result.
        Inactive admins are listed too: admins are deactivated, never deleted.
        """
        return admins.list_admins(**query)

    @blp.authenticated
    @blp.managers_only(on_refusal=admins.record_refused_creation)
    @blp.arguments(AdminCreateSchema)
    @blp.response(201, AdminSchema)
    @blp.errors(403, 409, 429)
    @blp.doc(operationId="create_admin")
    def post(self, data):
        """Add an admin (owner: any role; admin: admin or viewer)

        Emails are unique across all tenants. An email already in use, here or
        elsewhere, is refused with 409 (the answer does not say where); such
        refusals are limited per tenant and hour (then 429). Every refusal is
        recorded in the audit log as `admin.create_refused`.
        """
        admin = admins.create_admin(current_identity().admin, data)
        return admin, 201, {"Location": url_for("tenants.AdminById", admin_id=admin.id)}


@blp.route("/admins/<uuid:admin_id>")
class AdminById(MethodView):
    @blp.authenticated
    @blp.response(200, AdminSchema, headers=ETAG_HEADER)
    @blp.errors(404)
    @blp.doc(operationId="get_admin")
    def get(self, admin_id: uuid.UUID):
        """One admin of your tenant

        With an `ETag`: send it back as `If-Match` on PATCH or deactivate. An
        admin of another tenant is 404, like one that does not exist.
        """
        return tagged(ADMIN, get_or_404(TenantAdmin, admin_id))

    @blp.authenticated
    @blp.managers_only
    @blp.arguments(AdminUpdateSchema)
    @blp.response(200, AdminSchema, headers=ETAG_HEADER)
    @blp.doc(parameters=[IF_MATCH_PARAMETER])
    @blp.errors(403, 404, 409, 412)
    @blp.doc(operationId="update_admin")
    def patch(self, changes, admin_id: uuid.UUID):
        """Change an admin's name, role or active state

        Owners manage everyone; admins manage admins and viewers. The tenant's last
        active owner cannot be demoted or deactivated (409). Deactivation ends the
        admin's sessions at once. With `If-Match`, applied only if the admin is
        still as that tag says (412 otherwise).
        """
        actor = current_identity().admin
        return tagged(ADMIN, admins.update_admin(actor, admin_id, changes, if_match(ADMIN)))


# Deactivation is a POST of its own, not DELETE: the admin is kept (the audit log
# points at them) and stays readable, so a DELETE would promise what it does not
# do (a client, or Schemathesis' use-after-free check, expects a 404 after it).
@blp.route("/admins/<uuid:admin_id>/deactivate")
class AdminDeactivation(MethodView):
    @blp.authenticated
    @blp.managers_only
    @blp.response(200, AdminSchema, headers=ETAG_HEADER)
    @blp.doc(parameters=[IF_MATCH_PARAMETER], operationId="deactivate_admin")
    @blp.errors(403, 404, 409, 412)
    def post(self, admin_id: uuid.UUID):
        """Deactivate an admin

        The same as PATCH with `{"is_active": false}`: the admin can no longer log
        in, their sessions end at once, and they stay readable (admins are never
        erased, so the audit log keeps pointing at them). Deactivating an inactive
        admin changes nothing. `If-Match` as for PATCH.
        """
        actor = current_identity().admin
        return tagged(ADMIN, admins.deactivate_admin(actor, admin_id, if_match(ADMIN)))


@blp.route("/audit-logs")
class AuditLogs(MethodView):
    @blp.authenticated
    @blp.managers_only
    @blp.arguments(AuditLogQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, AuditLogPageSchema)
    @blp.errors(403)
    @blp.doc(operationId="list_audit_logs")
    def get(self, query):
        """Your tenant's audit log, newest first (owner, admin)

        The `resource_id` of session entries (logins, logouts...) is the session's
        id for owners, and a stable reference (`ref-...`) for admins.
        """
        actor = current_identity().admin
        return audit_log.list_audit_logs(**query, reveal_sessions=may_see_session_ids(actor))
