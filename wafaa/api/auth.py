"""Authentication: login, token refresh, logout and the caller's sessions."""

import uuid

from flask.views import MethodView

from wafaa.api import Blueprint
from wafaa.schemas.auth import (
    NO_CACHE,
    OAUTH_ERROR_DOC,
    TOKEN_RESPONSE_HEADERS,
    LoginSchema,
    LogoutSchema,
    RefreshedTokensSchema,
    RefreshSchema,
    SessionSchema,
    TokenPairSchema,
    TokenRequestSchema,
)
from wafaa.schemas.common import ErrorSchema
from wafaa.security import current_identity
from wafaa.services import oauth, sessions

# Rate limits of these endpoints (per IP, per account): wafaa/ratelimit.py.
blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Login, tokens and sessions")


@blp.route("/login")
class Login(MethodView):
    @blp.public
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenPairSchema)
    @blp.errors(401, 429, 503)
    @blp.doc(operationId="login")
    def post(self, credentials):
        """Log in with email and password

        Returns an access token and a refresh token. Every failure (unknown email,
        wrong password, inactive account or tenant, locked account) is the same 401
        `invalid_credentials`.
        """
        return sessions.login(credentials["email"], credentials["password"])


@blp.route("/token")
class Token(MethodView):
    @blp.public
    @blp.arguments(TokenRequestSchema, location="form", error_status_code=400)
    @blp.response(200, TokenPairSchema, headers=TOKEN_RESPONSE_HEADERS)
    @blp.alt_response(
        400, schema=ErrorSchema, description=OAUTH_ERROR_DOC["description"], examples=OAUTH_ERROR_DOC["examples"]
    )
    @blp.errors(413, 415, 429, 503)
    @blp.doc(operationId="oauth_token")
    def post(self, form):
        """Log in with email and password (OAuth 2 password grant)

        The login of `POST /auth/login` for OAuth 2 clients, such as Swagger UI's
        **Authorize** dialog: a form (`application/x-www-form-urlencoded`) with
        `grant_type=password`, `username` (the email) and `password`. Same limits,
        throttling and audit as that login. Refusals are 400 with the RFC 6749 error
        in `code`: `invalid_grant` (every failed login, whatever failed),
        `invalid_request` (a missing, malformed or repeated parameter) or
        `unsupported_grant_type`.
        """
        return oauth.password_grant(form["username"], form["password"]), NO_CACHE


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.authenticated(refresh=True)
    @blp.arguments(RefreshSchema, required=False)
    @blp.response(200, RefreshedTokensSchema)
    @blp.doc(operationId="refresh_tokens")
    def post(self, body):
        """Exchange a refresh token for new tokens

        Send the refresh token as `Authorization: Bearer <refresh token>` or as
        `{"refresh_token": ...}`, not both: with an Authorization header the body's
        token is not read. The refresh token is rotated: the one sent stops
        working. Within a short grace window after a rotation (two tabs refreshing
        at once), the old refresh token gets an access token only, and no refresh
        token; after it, replaying a rotated refresh token revokes the whole
        session.
        """
        return sessions.refresh(current_identity())


@blp.route("/logout")
class Logout(MethodView):
    @blp.authenticated
    @blp.arguments(LogoutSchema, required=False)
    @blp.response(204)
    @blp.doc(operationId="logout")
    def post(self, body):
        """Log out

        Revokes this token's session (its access and refresh tokens stop working
        at once), or every session of the admin with `{"all_sessions": true}`.
        """
        sessions.logout(current_identity(), all_sessions=body.get("all_sessions", False))


@blp.route("/sessions")
class Sessions(MethodView):
    @blp.authenticated
    @blp.response(200, SessionSchema(many=True))
    @blp.doc(operationId="list_sessions")
    def get(self):
        """List your active sessions

        One per login that has not ended (logged out, revoked, expired);
        `current` marks the session of the token that asks.
        """
        return sessions.active_sessions(current_identity())


@blp.route("/sessions/<uuid:session_id>")
class SessionById(MethodView):
    @blp.authenticated
    @blp.response(204)
    @blp.errors(404)
    @blp.doc(operationId="revoke_session")
    def delete(self, session_id: uuid.UUID):
        """Revoke one of your sessions

        Its access and refresh tokens stop working at once. Another admin's
        session, or an unknown id, is 404.
        """
        sessions.revoke_own_session(current_identity(), session_id)
