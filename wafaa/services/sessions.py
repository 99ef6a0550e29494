"""Login sessions: login, refresh-token rotation, logout, revocation, purge.

A session is one refresh-token family. Its row holds the jti of the one refresh
token that may be used next; using it swaps in a new jti atomically. Revoking the
row kills every token of the family at once, in every worker, across restarts,
because every request checks its session (wafaa.security).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flask import current_app, request
from psycopg.types.json import Jsonb
from sqlalchemy import delete, func, or_, select, update

from wafaa import audit
from wafaa.db_pool import call_hot_path
from wafaa.errors import ApiError, NotFound, TooManyRequests, Unauthorized
from wafaa.extensions import db
from wafaa.models import AuthSession, normalize_email
from wafaa.passwords import gate, hash_with_salt, rehash, salt_rounds
from wafaa.ratelimit import check_login_failure_budget, count_login_failure
from wafaa.security import Identity, SessionRef, issue_tokens
from wafaa.tenancy import system_scope


class InvalidCredentials(ApiError):
    """The one answer to every failed login: it never says which part was wrong."""

    status, code, message = 401, "invalid_credentials", "The email or password is incorrect."
    headers = {"WWW-Authenticate": "Bearer"}


def _now() -> datetime:
    return datetime.now(UTC)


def _new_jti() -> str:
    return uuid.uuid4().hex


def _refresh_lifetime() -> timedelta:
    return current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]


def _lockout_window() -> timedelta:
    return timedelta(minutes=current_app.config["LOGIN_LOCKOUT_WINDOW_MINUTES"])


def _settle(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def login(email: str, password: str) -> dict:
    """Log in. The policy (throttling, the password comparison, the active flags,
    what is recorded) is one database function, wafaa/sql/login.sql; the password
    hash never leaves the database. This side does the one bcrypt check, with the
    account's salt, and no database connection held while it runs.

    Before any of it: this process's bound on logins in progress and on
    password checks (503, wafaa.passwords.HashingGate), and the service-wide
    budget of failed logins (429, answered after the same wait as a login that
    found no slot, so that a flood gains no speed from being refused).
    """
    with gate().login():
        try:
            flooded = check_login_failure_budget()
        except TooManyRequests:
            gate().hold()
            raise
        return _login(email, password, flooded)


def _login(email: str, password: str, flooded: bool) -> dict:
    rounds = current_app.config["BCRYPT_ROUNDS"]
    # Under a flood of failed logins, one password check at a time on this host.
    with gate().slot(host_wide=flooded):
        email = normalize_email(email)
        # An unknown email gets a salt too, shaped like a real one.
        (salt,) = call_hot_path("wafaa_login_salt", email, rounds)
        candidate = hash_with_salt(password, salt)
        # Every failure answers at the same moment after the check: an unknown
        # email writes nothing, a known one an audit row, and that difference must
        # not be visible as time.
        settle = time.monotonic() + current_app.config["LOGIN_FAILURE_SETTLE_MS"] / 1000
        # A hash cheaper than today's cost is upgraded on success, while the
        # plaintext is at hand (a second bcrypt, only for such accounts).
        new_hash = rehash(password) if candidate is not None and salt_rounds(salt) < rounds else None
    session_id, refresh_jti = uuid.uuid4(), _new_jti()
    outcome, tenant_id, admin_id, expires_at = call_hot_path(
        "wafaa_login",
        email,
        candidate,
        new_hash,
        current_app.config["LOGIN_LOCKOUT_THRESHOLD"],
        _lockout_window(),
        timedelta(seconds=current_app.config["LOGIN_THROTTLE_BASE_SECONDS"]),
        session_id,
        refresh_jti,
        _refresh_lifetime(),
        audit.client_ip(),
        audit.client_source(),
        _user_agent(),
        Jsonb(audit.with_context()),
    )
    if outcome != "started":
        count_login_failure()
        _settle(settle)
        raise InvalidCredentials()
    return issue_tokens(SessionRef(session_id, tenant_id, admin_id, refresh_jti, expires_at))


def _user_agent() -> str | None:
    """The client's User-Agent as storable text (no NUL, no lone surrogate)."""
    agent = request.user_agent.string[:255].replace("\x00", "")
    return agent.encode("utf-8", "replace").decode("utf-8") or None


def refresh(identity: Identity) -> dict:
    """Rotate the session's refresh token; detect and punish reuse."""
    session = identity.session
    presented = identity.claims["jti"]
    next_jti = _new_jti()
    # Each rotation extends the session by the refresh lifetime, never past its
    # absolute limit: a stolen family cannot be kept alive for ever.
    max_age = timedelta(days=current_app.config["SESSION_MAX_DAYS"])
    # The limit in UTC, through immutable functions only: Citus evaluates an
    # UPDATE's expressions on the coordinator, and refuses a stable one (such as
    # timestamptz + interval) applied to a column.
    limit = func.timezone("UTC", func.timezone("UTC", AuthSession.created_at) + max_age)
    expires_at = func.least(_now() + _refresh_lifetime(), limit)
    # Only one request can swap a given jti: the row lock serialises concurrent
    # refreshes, and the loser's WHERE no longer matches once the winner commits.
    rotated = db.session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == session.id,
            AuthSession.refresh_jti == presented,
            AuthSession.revoked_at.is_(None),
        )
        .values(
            previous_refresh_jti=presented,
            refresh_jti=next_jti,
            rotated_at=func.now(),
            last_used_at=func.now(),
            expires_at=expires_at,
        )
        .returning(AuthSession.expires_at)
        .execution_options(synchronize_session=False)
    ).first()
    if rotated is not None:
        return issue_tokens(replace(session, refresh_jti=next_jti, expires_at=rotated.expires_at))
    return _refresh_with_stale_token(session, presented)


def _refresh_with_stale_token(session: SessionRef, presented: str) -> dict:
    grace = timedelta(seconds=current_app.config["REFRESH_REUSE_GRACE_SECONDS"])
    current = db.session.execute(
        select(
            AuthSession.refresh_jti,
            AuthSession.previous_refresh_jti,
            AuthSession.expires_at,
            AuthSession.revoked_at,
            (AuthSession.rotated_at >= func.now() - grace).label("in_grace"),
        ).where(AuthSession.id == session.id)
    ).one()
    if current.revoked_at is None and current.previous_refresh_jti == presented and current.in_grace:
        # Another request (a second tab) rotated this token a moment ago: answer
        # with an access token, so the user is not logged out, but never with the
        # family's live refresh token, which a thief replaying a stolen one would
        # otherwise walk away with. The client keeps using the refresh token the
        # rotation gave the other tab.
        audit.record(
            "auth.refresh_grace_replay",
            tenant_id=session.tenant_id,
            resource_type="session",
            resource_id=session.id,
            actor_id=session.admin_id,
        )
        return issue_tokens(session, with_refresh=False)
    # An old refresh token came back after its successor was issued: it was
    # copied. Kill the whole family, the thief's tokens and the victim's alike.
    revoke_sessions(AuthSession.id == session.id, reason="refresh_reuse")
    audit.record(
        "auth.refresh_reuse_detected",
        tenant_id=session.tenant_id,
        resource_type="session",
        resource_id=session.id,
        actor_id=session.admin_id,
    )
    # The revocation and its audit row stand although the request fails.
    raise Unauthorized("The token has been revoked.", code="token_revoked", keep_changes=True)


def revoke_sessions(*criteria, reason: str) -> int:
    """Revoke the matching live sessions of the current tenant; returns how many."""
    result = db.session.execute(
        update(AuthSession)
        .where(*criteria, AuthSession.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def revoke_admin_sessions(admin_id: uuid.UUID, reason: str) -> int:
    """Used when an admin is deactivated or changes password."""
    return revoke_sessions(AuthSession.admin_id == admin_id, reason=reason)


def logout(identity: Identity, all_sessions: bool) -> None:
    if all_sessions:
        count = revoke_admin_sessions(identity.admin.id, reason="logout_all")
    else:
        count = revoke_sessions(AuthSession.id == identity.session.id, reason="logout")
    audit.record(
        "auth.logout",
        tenant_id=identity.tenant.id,
        resource_type="session",
        resource_id=identity.session.id,
        details={"all_sessions": all_sessions, "sessions_revoked": count},
    )


def active_sessions(identity: Identity) -> list[dict]:
    sessions = db.session.scalars(
        select(AuthSession)
        .where(
            AuthSession.admin_id == identity.admin.id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > func.now(),
        )
        .order_by(AuthSession.created_at.desc())
    ).all()
    return [
        {
            "id": s.id,
            "created_at": s.created_at,
            "last_used_at": s.last_used_at,
            "expires_at": s.expires_at,
            "ip_address": s.ip_address,
            "user_agent": s.user_agent,
            "current": s.id == identity.session.id,
        }
        for s in sessions
    ]


def revoke_own_session(identity: Identity, session_id: uuid.UUID) -> None:
    # Scoped to the caller's own live sessions: anyone else's id is a 404.
    count = revoke_sessions(
        AuthSession.id == session_id, AuthSession.admin_id == identity.admin.id, reason="revoked_by_user"
    )
    if count == 0:
        raise NotFound()
    audit.record("auth.session_revoked", tenant_id=identity.tenant.id, resource_type="session", resource_id=session_id)


def purge_sessions() -> int:
    """Delete sessions that expired, or were revoked more than SESSION_RETENTION_DAYS ago."""
    retention = timedelta(days=current_app.config["SESSION_RETENTION_DAYS"])
    with system_scope("purge expired sessions"):
        result = db.session.execute(
            delete(AuthSession)
            .where(or_(AuthSession.expires_at < func.now(), AuthSession.revoked_at < func.now() - retention))
            .execution_options(synchronize_session=False)
        )
    return result.rowcount
