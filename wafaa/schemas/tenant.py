"""Tenant schemas: output, the PATCH body, and creation (CLI)."""

import json

from marshmallow import ValidationError, fields, post_load, validate

from wafaa.models.tenant import SLUG_PATTERN, SubscriptionTier
from wafaa.schemas.common import Name, StrictSchema, Text, is_storable_text, json_depth

SETTINGS_MAX_BYTES = 16 * 1024
SETTINGS_MAX_DEPTH = 8


def settings_problem(settings: dict) -> str | None:
    """Why `settings` cannot be stored, or None."""
    if json_depth(settings) > SETTINGS_MAX_DEPTH:
        return f"Settings may be nested at most {SETTINGS_MAX_DEPTH} levels deep."
    try:
        encoded = json.dumps(settings, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError:  # NaN or Infinity (UnicodeEncodeError is a ValueError too)
        return "Settings must hold finite numbers and valid Unicode text."
    if not all(is_storable_text(text) for text in _strings(settings)):
        return "Settings must not contain NUL characters."
    if len(encoded) > SETTINGS_MAX_BYTES:
        return f"Settings must be at most {SETTINGS_MAX_BYTES} bytes as compact JSON."
    return None


def _strings(value):
    """Every key and string value of a JSON document, without recursion."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            yield from node.keys()
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class SettingsField(fields.Dict):
    """A JSON object; as a PATCH it is a JSON Merge Patch (null removes a key)."""

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        problem = settings_problem(result)
        if problem:
            raise ValidationError(problem)
        return result


def _name_field(**kwargs):
    return Name(**kwargs)


class TenantSchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)
    slug = fields.String(dump_only=True)
    subscription_tier = fields.Enum(SubscriptionTier, by_value=fields.String, dump_only=True)
    is_active = fields.Boolean(dump_only=True)
    settings = fields.Dict(dump_only=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)


class TenantUpdateSchema(StrictSchema):
    """Only `name` and `settings` can change; anything else is refused (422)."""

    name = _name_field(metadata={"description": "Display name (surrounding spaces are trimmed)"})
    settings = SettingsField(
        metadata={
            "description": "JSON Merge Patch (RFC 7396) applied to the current settings: keys are merged, "
            f"null removes a key. The result is at most {SETTINGS_MAX_BYTES} bytes and "
            f"{SETTINGS_MAX_DEPTH} levels deep, with no NUL character in any key or string "
            "(PostgreSQL's jsonb cannot store one)."
        }
    )

    @post_load
    def _trim(self, data, **kwargs):
        if "name" in data:
            data["name"] = data["name"].strip()
            if not data["name"]:
                raise ValidationError("Name must not be blank.", "name")
        return data


class TenantCreateSchema(StrictSchema):
    name = _name_field(required=True)
    slug = Text(
        required=True,
        validate=[
            validate.Length(min=1, max=100),
            validate.Regexp(SLUG_PATTERN, error="Use lower-case letters, digits and single hyphens."),
        ],
    )
    subscription_tier = fields.Enum(SubscriptionTier, by_value=fields.String, load_default=SubscriptionTier.FREE)

    @post_load
    def _trim(self, data, **kwargs):
        data["name"] = data["name"].strip()
        if not data["name"]:
            raise ValidationError("Name must not be blank.", "name")
        return data
