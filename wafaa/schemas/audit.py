"""Audit log schemas: output and the list query."""

from marshmallow import ValidationError, fields, validate, validates_schema

from wafaa.audit import ACTIONS
from wafaa.schemas.common import PageQuerySchema, PageSchema, StrictSchema, Text


class AuditLogSchema(StrictSchema):
    id = fields.UUID(required=True)
    action = fields.String(required=True, metadata={"example": "tenant.updated"})
    resource_type = fields.String(required=True, metadata={"example": "tenant"})
    resource_id = fields.String(allow_none=True, required=True)
    user_id = fields.UUID(allow_none=True, required=True, metadata={"description": "The acting admin, if any"})
    details = fields.Dict(required=True, metadata={"description": "Changed fields before and after, request id"})
    ip_address = fields.String(allow_none=True, required=True)
    created_at = fields.AwareDateTime(required=True)


class AuditLogQuerySchema(PageQuerySchema):
    action = Text(validate=validate.OneOf(ACTIONS))
    resource_type = Text(validate=validate.Length(min=1, max=50))
    user_id = fields.UUID()
    since = fields.AwareDateTime(metadata={"description": "Only entries at or after this time (ISO 8601 with zone)"})
    until = fields.AwareDateTime(metadata={"description": "Only entries before this time (ISO 8601 with zone)"})

    @validates_schema
    def _window(self, data, **kwargs):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError("`since` must be before `until`.", "since")


class AuditLogPageSchema(PageSchema):
    items = fields.List(fields.Nested(AuditLogSchema), required=True)
