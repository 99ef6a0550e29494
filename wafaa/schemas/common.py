"""Schemas shared by every blueprint: the error envelope, pagination, strict fields."""

import marshmallow as ma
from marshmallow import fields, validate


class StrictSchema(ma.Schema):
    """Unknown fields are an error, so a client can never set what it may not."""

    class Meta:
        unknown = ma.RAISE


class Text(fields.String):
    """A string PostgreSQL can store: no NUL characters (text columns reject them)."""

    default_error_messages = {"nul": "Must not contain NUL characters."}

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in result:
            raise self.make_error("nul")
        return result


class ErrorBodySchema(ma.Schema):
    status = fields.Integer(required=True, metadata={"description": "HTTP status code", "example": 422})
    code = fields.String(
        required=True,
        metadata={"description": "Stable, machine-readable error code", "example": "validation_error"},
    )
    message = fields.String(required=True, metadata={"description": "What went wrong, for humans"})
    details = fields.Dict(
        allow_none=True,
        required=True,
        metadata={"description": "Per-field problems by location (json, query, ...) or null"},
    )
    request_id = fields.String(
        allow_none=True, required=True, metadata={"description": "Echo of X-Request-ID, for support requests"}
    )


class ErrorSchema(ma.Schema):
    """Every 4xx and 5xx response has this body."""

    error = fields.Nested(ErrorBodySchema, required=True)


class PageQuerySchema(ma.Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class PageSchema(ma.Schema):
    page = fields.Integer(required=True)
    page_size = fields.Integer(required=True)
    total = fields.Integer(required=True, metadata={"description": "Items matching the filters, all pages"})
    pages = fields.Integer(required=True)
