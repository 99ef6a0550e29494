"""Tenant admin schemas: output, creation, update and the list query."""

import unicodedata

from marshmallow import ValidationError, fields, post_load, pre_load, validates

from wafaa.models.admin import AdminRole, normalize_email
from wafaa.passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_LENGTH, password_problem
from wafaa.schemas.common import EmailText, JsonBoolean, Name, PageQuerySchema, PageSchema, StrictSchema, Text


class AdminSchema(StrictSchema):
    id = fields.UUID(dump_only=True)
    email = fields.String(dump_only=True)
    full_name = fields.String(dump_only=True)
    role = fields.Enum(AdminRole, by_value=fields.String, dump_only=True)
    is_active = fields.Boolean(dump_only=True)
    last_login = fields.AwareDateTime(dump_only=True, allow_none=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)


def _full_name(**kwargs):
    return Name(**kwargs)


def _strip_full_name(data: dict) -> dict:
    if "full_name" in data:
        data["full_name"] = data["full_name"].strip()
        if not data["full_name"]:
            raise ValidationError("Full name must not be blank.", "full_name")
    return data


class AdminCreateSchema(StrictSchema):
    email = EmailText(required=True)
    full_name = _full_name(required=True)
    role = fields.Enum(AdminRole, by_value=fields.String, required=True)
    password = Text(
        required=True,
        load_only=True,
        metadata={
            "description": f"{MIN_PASSWORD_LENGTH} characters to {MAX_PASSWORD_BYTES} bytes in UTF-8 "
            "(bcrypt reads no further), no NUL",
            "format": "password",
            "minLength": MIN_PASSWORD_LENGTH,
            "maxLength": MAX_PASSWORD_BYTES,
        },
    )

    @pre_load
    def _trim_email(self, data, **kwargs):
        # Compatibility forms folded (a full-width "＠" is an "@") and trimmed
        # before the format check; lower-cased and the domain in IDNA form after.
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            data = {**data, "email": unicodedata.normalize("NFKC", data["email"]).strip()}
        return data

    @validates("password")
    def _password(self, value, **kwargs):
        problem = password_problem(value)
        if problem:
            raise ValidationError(problem)

    @post_load
    def _normalize(self, data, **kwargs):
        data["email"] = normalize_email(data["email"])
        return _strip_full_name(data)


class AdminUpdateSchema(StrictSchema):
    full_name = _full_name()
    role = fields.Enum(AdminRole, by_value=fields.String)
    is_active = JsonBoolean()

    @post_load
    def _normalize(self, data, **kwargs):
        return _strip_full_name(data)


class AdminListQuerySchema(PageQuerySchema):
    role = fields.Enum(AdminRole, by_value=fields.String)
    is_active = fields.Boolean()


class AdminPageSchema(PageSchema):
    items = fields.List(fields.Nested(AdminSchema), required=True)
