"""Schemas of the auth endpoints."""

from marshmallow import ValidationError, fields, missing, pre_load

from wafaa.schemas.common import JsonBoolean, StrictSchema, Text
from wafaa.services.oauth import PASSWORD_GRANT, InvalidGrant, UnsupportedGrantType


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


class TokenRequestSchema(StrictSchema):
    """RFC 6749 section 4.3.2, form-encoded. Swagger UI also sends `scope` (empty)
    and, when typed in, `client_id`; there are no scopes and no registered
    clients, so both are accepted and ignored."""

    grant_type = fields.String(required=True, metadata={"enum": [PASSWORD_GRANT], "example": PASSWORD_GRANT})
    username = Text(required=True, metadata={"description": "The email address", "example": "owner@acme.example.com"})
    password = Text(required=True, load_only=True, metadata={"example": "wafaa-demo-password"})
    scope = fields.String(metadata={"description": "Ignored: a token grants what the admin's role allows"})
    client_id = fields.String(metadata={"description": "Ignored: Swagger UI and scripts are public clients"})

    @pre_load
    def _grant_first(self, data, **kwargs):
        # The grant type is judged before the other fields (an unknown grant is
        # unsupported_grant_type, not a missing username), and no parameter may
        # come twice (RFC 6749 section 3.2): the first of two is not silently taken.
        getlist = getattr(data, "getlist", None)
        if getlist is not None:
            repeated = sorted(name for name in set(data) if len(getlist(name)) > 1)
            if repeated:
                raise ValidationError({name: ["Give this parameter once."] for name in repeated})
        if data.get("grant_type") not in (None, missing, PASSWORD_GRANT):
            raise UnsupportedGrantType()
        return data


# RFC 6749 section 5.1: a token response is never cached, by HTTP/1.1 caches
# (Cache-Control, set on every /api/ answer by wafaa.http_guards) or HTTP/1.0 ones.
NO_CACHE = {"Pragma": "no-cache"}
TOKEN_RESPONSE_HEADERS = {
    "Cache-Control": {"description": "`no-store`", "schema": {"type": "string", "enum": ["no-store"]}},
    "Pragma": {"description": "`no-cache`", "schema": {"type": "string", "enum": ["no-cache"]}},
}


def _oauth_example(code: str, message: str, details: dict | None = None) -> dict:
    error = {"status": 400, "code": code, "message": message, "details": details, "request_id": "3f0c9d1e2a4b"}
    return {"summary": code, "value": {"error": error}}


# The token endpoint's 400, in the one error shape with the RFC 6749 (section
# 5.2) error as its `code` (the invalid_request message is wafaa.errors').
OAUTH_ERROR_DOC = {
    "description": "Refused; `code` is the RFC 6749 error: "
    "`invalid_grant`, `invalid_request`, `unsupported_grant_type`",
    "examples": {
        "invalid_grant": _oauth_example("invalid_grant", InvalidGrant.message),
        "invalid_request": _oauth_example(
            "invalid_request", "The request is invalid.", {"form": {"username": ["Missing data for required field."]}}
        ),
        "unsupported_grant_type": _oauth_example("unsupported_grant_type", UnsupportedGrantType.message),
    },
}
