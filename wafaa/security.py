"""Tokens and request authentication (flask-jwt-extended callbacks).

A request's way through authentication, in `before_request`:

1. The view's requirement is looked up: access token (the default, so a new
   endpoint is protected unless it says otherwise), refresh token, or public.
2. flask-jwt-extended reads the bearer token (header only; the refresh endpoint
   also takes it from the JSON body) and verifies signature, algorithm, `exp`,
   `nbf` and type. Before the signature is checked, `_signing_key` refuses a token
   without every claim we rely on. An access token verified before is taken from
   `VerifiedTokens` instead, with `exp` and `nbf` checked again.
3. `_is_revoked` binds the request to the token's tenant (the signed `tid`) and
   loads, in one query and under that tenant's row-level security, the token's
   session, admin and tenant. A revoked or expired session, an inactive admin or
   an inactive tenant makes the token revoked. The loaded rows become the
   request's identity: authorization uses the role and state read here, never
   claims from the token.

Every failure is a 401 with `WWW-Authenticate: Bearer` and a specific code.
"""

from __future__ import annotations

import enum
import hashlib
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, make_dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from flask import Flask, current_app, g, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    get_jwt,
    get_jwt_header,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import JWTDecodeError, RevokedTokenError

from wafaa.db_pool import call_hot_path
from wafaa.errors import Unauthorized, error_response
from wafaa.extensions import jwt
from wafaa.models import AdminRole, Tenant
from wafaa.schemas.common import is_storable_text
from wafaa.tenancy import bind_request_session

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


@dataclass(frozen=True)
class SessionRef:
    id: uuid.UUID
    tenant_id: uuid.UUID
    admin_id: uuid.UUID
    refresh_jti: str
    expires_at: datetime


@dataclass(frozen=True)
class Actor:
    """The admin making the request, as the database says now (role, active)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    full_name: str
    role: AdminRole


# The caller's tenant as read with the token check: every column of the model,
# so a new column reaches GET /tenants/me with no change here or in the SQL.
TenantSnapshot = make_dataclass("TenantSnapshot", [c.key for c in Tenant.__table__.columns], frozen=True)


def _from_json(column):
    """How a column's value comes back from to_jsonb(), as the model's type."""
    python_type = column.type.python_type
    if issubclass(python_type, enum.Enum):
        return python_type
    if python_type is uuid.UUID:
        return uuid.UUID
    if python_type is datetime:
        return datetime.fromisoformat
    return lambda value: value


_TENANT_FIELDS = tuple((c.key, c.name, _from_json(c)) for c in Tenant.__table__.columns)


def tenant_snapshot(row: Mapping) -> TenantSnapshot:
    """From the tenant row (JSON) the identity function returns. Columns the model
    does not know yet (a migration ahead of this code) are left out."""
    return TenantSnapshot(
        **{key: None if row.get(name) is None else convert(row[name]) for key, name, convert in _TENANT_FIELDS}
    )


@dataclass(frozen=True)
class Identity:
    """Who is calling, read with the token check. Read-only: a service that changes
    the tenant or an admin loads (and locks) the row itself."""

    admin: Actor
    tenant: TenantSnapshot
    session: SessionRef
    claims: Mapping


def current_identity() -> Identity:
    identity = g.get("identity")
    if identity is None:
        raise RuntimeError("no authenticated identity in this request")
    return identity


def _required_auth() -> str:
    current = request._get_current_object()  # one context lookup, not one per attribute
    if current.routing_exception is not None or current.method == "OPTIONS":
        # Let routing answer 404/405 and CORS answer preflights, token or not.
        return PUBLIC
    if current.blueprint in PUBLIC_BLUEPRINTS:
        return PUBLIC
    view = current_app.view_functions[current.endpoint]
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = current.method.lower()
        view = getattr(view_class, method, None) or getattr(view_class, "get", None)
    return getattr(view, _AUTH_ATTRIBUTE, ACCESS)


_PLAIN_BEARER = re.compile(r"Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class VerifiedTokens:
    """Access tokens flask-jwt-extended has fully verified, by their exact header.

    flask-jwt-extended decodes a token four times per request (PyJWT checks each
    character of each segment in Python); a client sends the same access token
    with every request for half an hour. A repeat is answered from here: the same
    bytes verified before verify the same way again, except for time, so `exp`
    and `nbf` are checked anew (an expired token falls through to the library,
    which answers token_expired). The revocation check, which reads the
    database, runs on every request either way.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._entries: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    @staticmethod
    def key(header: str) -> str | None:
        # Only the plain form "Bearer <jwt>", by digest: padded or combined
        # headers take the library's path every time and cannot fill the map.
        if not _PLAIN_BEARER.fullmatch(header):
            return None
        return hashlib.sha256(header.encode("ascii")).hexdigest()

    def get(self, header: str) -> tuple[Mapping, Mapping] | None:
        """(JWT header, claims) of a token verified before and not expired."""
        key = self.key(header)
        with self._lock:
            entry = self._entries.get(key) if key else None
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is None or not entry[1].get("nbf", 0) <= time.time() < entry[1]["exp"]:
            return None
        return entry

    def put(self, header: str, jwt_header: dict, claims: dict) -> None:
        key = self.key(header)
        if key is None:
            return
        with self._lock:
            # Shared between requests: read-only.
            self._entries[key] = (MappingProxyType(dict(jwt_header)), MappingProxyType(dict(claims)))
            self._entries.move_to_end(key)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)


def authenticate_request() -> None:
    kind = _required_auth()
    if kind == PUBLIC:
        return
    if kind == ACCESS:
        _authenticate_access_token()
        return
    # flask-jwt-extended reads the JSON location with body.get(): only offer it
    # when the body is an object (a JSON array or string would crash it), and
    # refuse a token PyJWT could not even encode (a lone surrogate).
    body = request.get_json(silent=True)
    token = body.get("refresh_token") if isinstance(body, dict) else None
    if isinstance(token, str) and not is_storable_text(token):
        raise Unauthorized(code="token_invalid")
    # One method per request (RFC 6750, 2): with an Authorization header, it is the
    # credential, whatever it holds; the body's token only counts without one.
    from_body = isinstance(body, dict) and "Authorization" not in request.headers
    verify_jwt_in_request(refresh=True, locations=["json"] if from_body else ["headers"])


def _authenticate_access_token() -> None:
    header = request.headers.get("Authorization", "")
    verified = current_app.extensions["wafaa_verified_tokens"]
    entry = verified.get(header)
    if entry is None:
        verify_jwt_in_request(locations=["headers"])  # everything, and the revocation check
        verified.put(header, get_jwt_header(), get_jwt())
        return
    jwt_header, claims = entry
    if _is_revoked(jwt_header, claims):
        raise RevokedTokenError(jwt_header, claims)
    # What verify_jwt_in_request would have left in `g`, so that the library's
    # documented API (get_jwt, get_jwt_identity, get_jwt_header) works on this
    # path too (tests/test_unit_of_work.py checks it on a repeated token).
    vars(g._get_current_object()).update(
        _jwt_extended_jwt=dict(claims),
        _jwt_extended_jwt_header=dict(jwt_header),
        _jwt_extended_jwt_user={"loaded_user": None},
        _jwt_extended_jwt_location="headers",
    )


def load_identity(tenant_id: uuid.UUID, session_id: uuid.UUID, admin_id: uuid.UUID) -> tuple | None:
    """The live session, admin and tenant behind a token, or None.

    The one query every authenticated request makes: a database function
    (wafaa/sql/request_identity.sql) that reads the live session, its admin and its
    tenant row, in one round trip and with a cached plan. Through the ORM it took
    three round trips (docs/performance.md).
    """
    row = call_hot_path("wafaa_request_identity", tenant_id, session_id, admin_id)
    if row is None:
        return None
    refresh_jti, expires_at, email, full_name, role, tenant = row
    return (
        SessionRef(session_id, tenant_id, admin_id, refresh_jti, expires_at),
        Actor(admin_id, tenant_id, email, full_name, AdminRole(role)),
        tenant_snapshot(tenant),
    )


def issue_tokens(session: SessionRef, *, with_refresh: bool = True) -> dict:
    """A new access token, and (unless told otherwise) a refresh token carrying
    the session's current jti."""
    claims = {"tid": str(session.tenant_id), "sid": str(session.id)}
    identity = str(session.admin_id)
    access_expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    tokens = {
        "access_token": create_access_token(identity, additional_claims=claims),
        "token_type": "Bearer",
        "expires_in": int(access_expires.total_seconds()),
    }
    if with_refresh:
        tokens["refresh_token"] = create_refresh_token(
            identity,
            additional_claims={**claims, "jti": session.refresh_jti},
            expires_delta=session.expires_at - datetime.now(UTC),
        )
    return tokens


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


def _is_revoked(header: Mapping, claims: Mapping) -> bool:
    tenant_id, session_id, admin_id = (uuid.UUID(claims[name]) for name in ("tid", "sid", "sub"))
    bind_request_session(tenant_id, session_id, admin_id)
    found = load_identity(tenant_id, session_id, admin_id)
    if found is None:
        return True
    session, admin, tenant = found
    context = g._get_current_object()
    context.identity = Identity(admin=admin, tenant=tenant, session=session, claims=claims)
    context.user_id = admin.id
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
    app.extensions["wafaa_verified_tokens"] = VerifiedTokens()
    app.before_request(authenticate_request)
