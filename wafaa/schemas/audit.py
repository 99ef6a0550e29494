"""Audit log schemas: output and the list query."""

import re
import uuid
from datetime import UTC, datetime, timedelta

from marshmallow import fields, validate

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


# A position in the log, newest first: (created_at, id) of an entry, as
# "<microseconds since 1970>.<id in hex>". Every string of this pattern is a
# position (before, between or after entries), so the document's pattern is the
# whole rule: clients should still pass the cursors they are given, unread.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Cursor(fields.String):
    default_error_messages = {"cursor": "Not a cursor of this log (use next_cursor or previous_cursor as given)."}

    def __init__(self, **kwargs):
        super().__init__(metadata={"pattern": CURSOR_PATTERN, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not re.match(CURSOR_PATTERN, text):
            raise self.make_error("cursor")
        micros, _, entry_id = text.partition(".")
        return _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=entry_id)


def cursor_of(created_at: datetime, entry_id: uuid.UUID) -> str:
    return f"{(created_at - _EPOCH) // _MICROSECOND}.{entry_id.hex}"


class AuditLogQuerySchema(PageQuerySchema):
    after = Cursor(
        metadata={
            "description": "Entries older than this cursor (a `next_cursor`): pages that do not shift. "
            "With `before` too: the entries between the two. With `page`: that page from the cursor on"
        }
    )
    before = Cursor(
        metadata={"description": "Entries newer than this cursor (a `previous_cursor`), the oldest of them first"}
    )
    action = Text(validate=validate.OneOf(ACTIONS))
    resource_type = Text(validate=validate.Length(min=1, max=50))
    user_id = fields.UUID()
    # A window that holds no time (until at or before since) is empty, not an error:
    # every combination the document allows is answered.
    since = fields.AwareDateTime(metadata={"description": "Only entries at or after this time (ISO 8601 with zone)"})
    until = fields.AwareDateTime(metadata={"description": "Only entries before this time (ISO 8601 with zone)"})


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
