"""Schemas shared by every blueprint: the error envelope, pagination, strict fields."""

import marshmallow as ma
from marshmallow import ValidationError, fields, validate

from wafaa.identities import email_problem, name_problem


class StrictSchema(ma.Schema):
    """Unknown fields are an error, so a client can never set what it may not."""

    class Meta:
        unknown = ma.RAISE


def json_depth(value) -> int:
    """Nesting depth of a JSON value (a flat object is 1), without recursion, so a
    hostile document cannot exhaust the stack."""
    depth, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in node)
    return depth


def is_storable_text(text: str) -> bool:
    """PostgreSQL stores UTF-8 without NUL: a lone surrogate (JSON "\\ud800") or a
    NUL character cannot be stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


# The rules below as JSON Schema patterns (ECMA and Python regex alike), so that
# the OpenAPI document states what the service enforces and a schema-valid value
# is never refused (Schemathesis' positive_data_acceptance checks exactly that).
NO_NUL_PATTERN = r"^[^\x00]*$"
# marshmallow's Email wants a dot in the domain and a top-level label of two or more.
EMAIL_PATTERN = r"^[^\x00]+@[^@\x00]+\.[^@.\x00]{2,}$"
# Control characters (Unicode Cc) and the bidirectional controls (identities.BIDI_CONTROLS).
_NAME_CONTROLS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# What str.strip() removes, beyond the controls: a name is not blank after it.
_NAME_SPACES = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NAME_PATTERN = rf"^[^{_NAME_CONTROLS}]*[^{_NAME_CONTROLS}{_NAME_SPACES}][^{_NAME_CONTROLS}]*$"


def _documented(kwargs: dict, **properties) -> dict:
    """kwargs with OpenAPI properties added to the field's metadata (the caller's win)."""
    return {**kwargs, "metadata": {**properties, **kwargs.get("metadata", {})}}


class Text(fields.String):
    """A string PostgreSQL can store: valid UTF-8 (no lone surrogates), no NUL."""

    default_error_messages = {"text": "Must be valid Unicode text without NUL characters."}

    def __init__(self, **kwargs):
        super().__init__(**_documented(kwargs, pattern=NO_NUL_PATTERN))

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if not is_storable_text(result):
            raise self.make_error("text")
        return result


class JsonBoolean(fields.Boolean):
    """`true` or `false`, nothing else. marshmallow's Boolean also takes "yes",
    "on", 1 and 0, so a client sending `"all_sessions": "no"` would have got
    every session revoked, and a typo is never a decision. (Query strings, which
    carry only text, keep fields.Boolean.)"""

    default_error_messages = {"invalid": "Must be a JSON boolean: true or false."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _checked(problem_of):
    def check(value: str) -> None:
        problem = problem_of(value)
        if problem:
            raise ValidationError(problem)

    return check


class EmailText(Text):
    """An email address (at most 255 characters), as storable text, with no
    look-alike letters from another script (wafaa.identities)."""

    def __init__(self, **kwargs):
        super().__init__(
            validate=[validate.Email(), validate.Length(min=3, max=255), _checked(email_problem)],
            **_documented(
                kwargs,
                format="email",
                pattern=EMAIL_PATTERN,
                description="An email address; one writing system per part (no look-alike letters), "
                "an internationalised domain is kept in its IDNA (ASCII) form",
            ),
        )


class Name(Text):
    """A display name: 1-255 characters of storable text, not blank, no control
    or bidirectional control characters (NAME_PATTERN says the same)."""

    def __init__(self, **kwargs):
        super().__init__(
            validate=[validate.Length(min=1, max=255), _checked(name_problem)],
            **_documented(kwargs, pattern=NAME_PATTERN),
        )


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
    page = fields.Integer(required=True, allow_none=True, metadata={"description": "null when paged by cursor"})
    page_size = fields.Integer(required=True)
    total = fields.Integer(
        required=True, metadata={"description": "Items matching the filters, all pages (by cursor: from the cursor on)"}
    )
    pages = fields.Integer(required=True, allow_none=True, metadata={"description": "null when paged by cursor"})
