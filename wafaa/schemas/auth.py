"""Schemas of the auth endpoints."""

from marshmallow import fields

from wafaa.schemas.common import JsonBoolean, StrictSchema, Text


class LoginSchema(StrictSchema):
    email = Text(required=True, metadata={"example": "owner@acme.example.com"})
    # No length rule: a password bcrypt cannot check (over 72 bytes) is simply a
    # failed login, indistinguishable from a wrong one.
    password = Text(required=True, load_only=True, metadata={"example": "wafaa-demo-password"})


class TokenPairSchema(StrictSchema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Access token lifetime in seconds"})


class RefreshedTokensSchema(TokenPairSchema):
    refresh_token = fields.String(
        metadata={
            "description": "The rotated refresh token. Absent when the token sent had just been rotated by another "
            "request (within the grace window): use the refresh token that request received."
        }
    )


class RefreshSchema(StrictSchema):
    refresh_token = fields.String(
        metadata={"description": "The refresh token, unless it is sent as `Authorization: Bearer <refresh token>`"}
    )


class LogoutSchema(StrictSchema):
    all_sessions = JsonBoolean(
        load_default=False, metadata={"description": "Revoke every session of this admin, not just this one"}
    )


class SessionSchema(StrictSchema):
    id = fields.UUID(required=True)
    created_at = fields.AwareDateTime(required=True)
    last_used_at = fields.AwareDateTime(required=True)
    expires_at = fields.AwareDateTime(required=True)
    ip_address = fields.String(allow_none=True, required=True)
    user_agent = fields.String(allow_none=True, required=True)
    current = fields.Boolean(required=True, metadata={"description": "True for the session of this request's token"})
