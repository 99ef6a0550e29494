"""Tokens and request authentication (flask-jwt-extended callbacks).

A request's way through authentication, in `before_request`:

1. The view's requirement is looked up: access token (the default, so a new
   endpoint is protected unless it says otherwise), refresh token, or public.
2. flask-jwt-extended reads the bearer token (header only; the refresh endpoint
   also takes it from the JSON body) and verifies signature, algorithm, `exp`,
   `nbf` and type. Before the signature is checked, `_signing_key` refuses a token
   without every claim we rely on.
3. `_is_revoked` binds the request to the token's tenant (the signed `tid`) and
   loads, in one query and under that tenant's row-level security, the token's
   session, admin and tenant. A revoked or expired session, an inactive admin or
   an inactive tenant makes the token revoked. The loaded rows become the
   request's identity: authorization uses the role and state read here, never
   claims from the token.

Every failure is a 401 with `WWW-Authenticate: Bearer` and a specific code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask, current_app, g, request
from flask_jwt_extended import create_access_token, create_refresh_token, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTDecodeError
from sqlalchemy import bindparam, func, select

from wafaa.errors import error_response
from wafaa.extensions import db, jwt
from wafaa.models import AuthSession, Tenant, TenantAdmin
from wafaa.tenancy import bind_request_tenant

ACCESS = "access"
REFRESH = "refresh"
PUBLIC = "public"
_AUTH_ATTRIBUTE = "_wafaa_auth"
# Blueprints whose every endpoint is public: the API documentation.
PUBLIC_BLUEPRINTS = frozenset({"api-docs", "docs-assets"})

REQUIRED_CLAIMS = ("sub", "tid", "sid", "jti", "type", "iat", "exp")
UUID_CLAIMS = ("sub", "tid", "sid")


def requires(kind: str):
    """Mark a view as needing an access token, a refresh token, or nothing (public)."""

    def mark(view):
        setattr(view, _AUTH_ATTRIBUTE, kind)
        return view

    return mark


@dataclass
class Identity:
    admin: TenantAdmin
    tenant: Tenant
    session: AuthSession
    claims: dict


def current_identity() -> Identity:
    identity = g.get("identity")
    if identity is None:
        raise RuntimeError("no authenticated identity in this request")
    return identity


def _required_auth() -> str:
    if request.routing_exception is not None or request.method == "OPTIONS":
        # Let routing answer 404/405 and CORS answer preflights, token or not.
        return PUBLIC
    if request.blueprint in PUBLIC_BLUEPRINTS:
        return PUBLIC
    view = current_app.view_functions[request.endpoint]
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = request.method.lower()
        view = getattr(view_class, method, None) or getattr(view_class, "get", None)
    return getattr(view, _AUTH_ATTRIBUTE, ACCESS)


def authenticate_request() -> None:
    kind = _required_auth()
    if kind == PUBLIC:
        return
    # flask-jwt-extended reads the JSON location with body.get(): only offer it
    # when the body is an object (a JSON array or string would crash it).
    body_is_object = kind == REFRESH and isinstance(request.get_json(silent=True), dict)
    locations = ["headers", "json"] if body_is_object else ["headers"]
    verify_jwt_in_request(refresh=kind == REFRESH, locations=locations)


# Built once: SQLAlchemy caches its compiled form, and psycopg prepares it on the
# server after a few uses. The tenant criteria are added per request by
# wafaa.tenancy, like for any other query.
_IDENTITY = (
    select(AuthSession, TenantAdmin, Tenant)
    .join(TenantAdmin, TenantAdmin.id == AuthSession.admin_id)
    .join(Tenant, Tenant.id == AuthSession.tenant_id)
    .where(
        AuthSession.id == bindparam("session_id"),
        AuthSession.admin_id == bindparam("admin_id"),
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > func.now(),
        TenantAdmin.is_active.is_(True),
        Tenant.is_active.is_(True),
    )
)


def load_identity(session_id: uuid.UUID, admin_id: uuid.UUID) -> tuple[AuthSession, TenantAdmin, Tenant] | None:
    """The live session, admin and tenant behind a token, or None."""
    row = db.session.execute(_IDENTITY, {"session_id": session_id, "admin_id": admin_id}).first()
    return tuple(row) if row is not None else None


def issue_tokens(session: AuthSession, *, refresh_jti: str | None = None, expires_at: datetime | None = None) -> dict:
    """A new access token, and a refresh token carrying the session's current jti.

    `refresh_jti` and `expires_at` override the session object's values when the
    row was just rotated by a bulk UPDATE that did not touch the object.
    """
    claims = {"tid": str(session.tenant_id), "sid": str(session.id)}
    identity = str(session.admin_id)
    access_expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    refresh_expires_at = expires_at or session.expires_at
    return {
        "access_token": create_access_token(identity, additional_claims=claims),
        "refresh_token": create_refresh_token(
            identity,
            additional_claims={**claims, "jti": refresh_jti or session.refresh_jti},
            expires_delta=refresh_expires_at - datetime.now(UTC),
        ),
        "token_type": "Bearer",
        "expires_in": int(access_expires.total_seconds()),
    }


# --- flask-jwt-extended callbacks ------------------------------------------------


def _claims_problem(claims: dict) -> str | None:
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        return f"missing claims: {', '.join(missing)}"
    for name in UUID_CLAIMS:
        try:
            uuid.UUID(str(claims[name]))
        except ValueError:
            return f"claim {name} is not a UUID"
    if not isinstance(claims["sub"], str) or claims["type"] not in (ACCESS, REFRESH):
        return "bad sub or type"
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 64:
        return "bad jti"
    for name in ("iat", "exp"):
        if isinstance(claims[name], bool) or not isinstance(claims[name], int | float):
            return f"claim {name} is not a number"
    return None


def _signing_key(header: dict, unverified_claims: dict) -> str:
    # Called before the signature is verified: refusing here means a token
    # without the claims we rely on never reaches the revocation check.
    if _claims_problem(unverified_claims):
        raise JWTDecodeError("token claims are incomplete")
    return current_app.config["JWT_SECRET_KEY"]


def _is_revoked(header: dict, claims: dict) -> bool:
    bind_request_tenant(uuid.UUID(claims["tid"]))
    found = load_identity(uuid.UUID(claims["sid"]), uuid.UUID(claims["sub"]))
    if found is None:
        return True
    session, admin, tenant = found
    g.identity = Identity(admin=admin, tenant=tenant, session=session, claims=claims)
    g.user_id = admin.id
    return False


def _token_error(code: str, message: str):
    header = "Bearer" if code == "token_missing" else f'Bearer error="invalid_token", error_description="{message}"'
    return error_response(401, code, message, headers={"WWW-Authenticate": header})


def init_app(app: Flask) -> None:
    jwt.decode_key_loader(_signing_key)
    jwt.token_in_blocklist_loader(_is_revoked)
    jwt.unauthorized_loader(
        lambda reason: _token_error("token_missing", "A bearer token is required (Authorization: Bearer <token>).")
    )
    jwt.invalid_token_loader(lambda reason: _token_error("token_invalid", "The token is invalid."))
    jwt.token_verification_failed_loader(lambda header, claims: _token_error("token_invalid", "The token is invalid."))
    jwt.expired_token_loader(lambda header, claims: _token_error("token_expired", "The token has expired."))
    jwt.revoked_token_loader(lambda header, claims: _token_error("token_revoked", "The token has been revoked."))
    jwt.user_lookup_error_loader(lambda header, claims: _token_error("token_revoked", "The token has been revoked."))
    app.before_request(authenticate_request)
