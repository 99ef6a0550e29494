"""Audit log schemas: output and the list query."""

import base64
import binascii
import json
import uuid
from datetime import datetime

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


class Cursor(fields.String):
    """A position in the log, newest first: (created_at, id) of an entry, opaque
    to clients (base64url of JSON)."""

    default_error_messages = {"cursor": "Not a cursor of this log (use next_cursor or previous_cursor as given)."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            raw = json.loads(base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4)))
            position = (datetime.fromisoformat(raw["t"]), uuid.UUID(raw["id"]))
        except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
            raise self.make_error("cursor") from None
        if position[0].tzinfo is None:
            raise self.make_error("cursor")
        return position


def cursor_of(created_at: datetime, entry_id: uuid.UUID) -> str:
    raw = json.dumps({"t": created_at.isoformat(), "id": str(entry_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


class AuditLogQuerySchema(PageQuerySchema):
    after = Cursor(
        metadata={"description": "Entries older than this cursor (a `next_cursor`): pages that do not shift"}
    )
    before = Cursor(metadata={"description": "Entries newer than this cursor (a `previous_cursor`)"})
    action = Text(validate=validate.OneOf(ACTIONS))
    resource_type = Text(validate=validate.Length(min=1, max=50))
    user_id = fields.UUID()
    since = fields.AwareDateTime(metadata={"description": "Only entries at or after this time (ISO 8601 with zone)"})
    until = fields.AwareDateTime(metadata={"description": "Only entries before this time (ISO 8601 with zone)"})

    @validates_schema
    def _window(self, data, **kwargs):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError("`since` must be before `until`.", "since")
        if data.get("after") and data.get("before"):
            raise ValidationError("Give `after` or `before`, not both.", "after")
        if (data.get("after") or data.get("before")) and data.get("page", 1) != 1:
            raise ValidationError("A cursor replaces `page`: give one or the other.", "page")


class AuditLogPageSchema(PageSchema):
    items = fields.List(fields.Nested(AuditLogSchema), required=True)
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Pass as `after` for the next (older) entries; null when there are none"},
    )
    previous_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Pass as `before` for newer entries than these, as they arrive; null on an empty page"
        },
    )
