"""Login sessions: login, refresh-token rotation, logout, revocation, purge.

A session is one refresh-token family. Its row holds the jti of the one refresh
token that may be used next; using it swaps in a new jti atomically. Revoking the
row kills every token of the family at once, in every worker, across restarts,
because every request checks its session (wafaa.security).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from flask import current_app, request
from psycopg.types.json import Jsonb
from sqlalchemy import delete, func, or_, select, update

from wafaa import audit
from wafaa.db_pool import call_hot_path
from wafaa.errors import ApiError, NotFound, Unauthorized
from wafaa.extensions import db
from wafaa.models import AuthSession, TenantAdmin, normalize_email
from wafaa.passwords import needs_rehash, rehash, verify_password
from wafaa.security import Identity, SessionRef, issue_tokens
from wafaa.tenancy import bind_request_tenant, system_scope


class InvalidCredentials(ApiError):
    """The one answer to every failed login: it never says which part was wrong."""

    status, code, message = 401, "invalid_credentials", "The email or password is incorrect."
    headers = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class LoginCandidate:
    admin_id: uuid.UUID
    tenant_id: uuid.UUID
    password_hash: str
    can_log_in: bool
    recent_failures: int


def _now() -> datetime:
    return datetime.now(UTC)


def _new_jti() -> str:
    return uuid.uuid4().hex


def _refresh_lifetime() -> timedelta:
    return current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]


def _lockout_window() -> timedelta:
    return timedelta(minutes=current_app.config["LOGIN_LOCKOUT_WINDOW_MINUTES"])


def _find_login_candidate(email: str) -> LoginCandidate | None:
    # Login is the one request that does not know its tenant yet: the email
    # decides it. This lookup is the API's only cross-tenant read, in the system
    # scope, as a database function (migration 0004), which also counts the
    # account's recent failed logins for the lockout.
    row = call_hot_path("wafaa_login_candidate", normalize_email(email), _lockout_window())
    return LoginCandidate(*row) if row is not None else None


def _lock_and_count_failures(candidate: LoginCandidate) -> int:
    """Lock the account's row for this transaction, then count its failed logins
    anew (the count the lookup made is from before the password check).

    The lockout is derived from the audit log's auth.login_failed rows rather
    than kept as separate state (wafaa_recent_login_failures: refusals of a locked
    account do not count, so the lock lifts as the failures that caused it age out
    of the window). The row lock makes concurrent failures of one account take
    turns, so each sees those before it and the lock is recorded exactly once.
    Two statements: the count must take its snapshot after the lock is granted.
    """
    db.session.execute(select(TenantAdmin.id).where(TenantAdmin.id == candidate.admin_id).with_for_update())
    return db.session.scalar(
        select(func.wafaa_recent_login_failures(candidate.tenant_id, candidate.admin_id, _lockout_window()))
    )


def _refusal_reason(candidate: LoginCandidate, password_ok: bool) -> str | None:
    if candidate.recent_failures >= current_app.config["LOGIN_LOCKOUT_THRESHOLD"]:
        # Even the right password: the lock gets the same answer as a wrong one,
        # so it tells an attacker nothing.
        return "locked"
    if not password_ok:
        return "bad_password"
    if not candidate.can_log_in:
        return "inactive"
    return None


def _record_failure(candidate: LoginCandidate, reason: str) -> None:
    """The auth.login_failed row, and auth.account_locked when this one locks."""
    failures = _lock_and_count_failures(candidate)
    threshold = current_app.config["LOGIN_LOCKOUT_THRESHOLD"]
    if failures >= threshold:
        # Locked by attempts that ran alongside this one: it is a refusal of a
        # locked account (its answer says nothing either way) and does not count.
        reason = "locked"
    _audit_account(candidate, "auth.login_failed", {"reason": reason})
    if reason != "locked" and failures + 1 == threshold:
        window = current_app.config["LOGIN_LOCKOUT_WINDOW_MINUTES"]
        _audit_account(candidate, "auth.account_locked", {"failures": threshold, "window_minutes": window})
    db.session.commit()


def _audit_account(candidate: LoginCandidate, action: str, details: dict) -> None:
    """An audit row about the account itself, the account as its actor."""
    audit.record(
        action,
        tenant_id=candidate.tenant_id,
        resource_type="admin",
        resource_id=candidate.admin_id,
        actor_id=candidate.admin_id,
        details=details,
    )


def _settle(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def login(email: str, password: str) -> dict:
    candidate = _find_login_candidate(email)
    # Exactly one bcrypt check whatever happens next (a fixed dummy hash when the
    # email is unknown), and no database connection is held while it runs.
    password_ok = verify_password(password, candidate.password_hash if candidate else None)
    # Every failure answers at the same moment after the check: an unknown email
    # writes nothing, a known one an audit row, and that difference must not be
    # visible as time.
    settle = time.monotonic() + current_app.config["LOGIN_FAILURE_SETTLE_MS"] / 1000
    if candidate is None:
        _settle(settle)
        raise InvalidCredentials()

    bind_request_tenant(candidate.tenant_id)
    reason = _refusal_reason(candidate, password_ok)
    if reason is not None:
        _record_failure(candidate, reason)
        _settle(settle)
        raise InvalidCredentials()

    details, new_hash = {}, None
    if needs_rehash(candidate.password_hash):
        # The stored hash is cheaper than BCRYPT_ROUNDS: upgrade it while the
        # plaintext is at hand (hashed here, before any transaction opens). Not a
        # password change, so not audited as one.
        new_hash = rehash(password)
        details["password_rehashed"] = True
    # One database function (migration 0004), one transaction, one round trip:
    # lock the account and check again what may have changed during the password
    # check, then last_login, the re-hash, the session and its auth.login row.
    session_id, refresh_jti = uuid.uuid4(), _new_jti()
    outcome, expires_at = call_hot_path(
        "wafaa_start_session",
        candidate.tenant_id,
        candidate.admin_id,
        candidate.password_hash,
        new_hash,
        current_app.config["LOGIN_LOCKOUT_THRESHOLD"],
        _lockout_window(),
        session_id,
        refresh_jti,
        _refresh_lifetime(),
        audit.client_ip(),
        _user_agent(),
        Jsonb(audit.with_context(details)),
    )
    if outcome != "started":
        # Changed meanwhile: a new password (the one checked is now wrong), a
        # deactivation, or a lock by failures that ran alongside this login.
        _record_failure(candidate, "bad_password" if outcome == "password_changed" else outcome)
        _settle(settle)
        raise InvalidCredentials()
    return issue_tokens(SessionRef(session_id, candidate.tenant_id, candidate.admin_id, refresh_jti, expires_at))


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
    expires_at = func.least(_now() + _refresh_lifetime(), AuthSession.created_at + max_age)
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
        db.session.commit()
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
        # Another request (a second tab) rotated this token a moment ago. Answer
        # with the family's current refresh token instead of logging the user out.
        db.session.rollback()
        return issue_tokens(replace(session, refresh_jti=current.refresh_jti, expires_at=current.expires_at))
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
    db.session.commit()
    raise Unauthorized("The token has been revoked.", code="token_revoked")


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
    db.session.commit()


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
    db.session.commit()


def purge_sessions() -> int:
    """Delete sessions that expired, or were revoked more than SESSION_RETENTION_DAYS ago."""
    retention = timedelta(days=current_app.config["SESSION_RETENTION_DAYS"])
    with system_scope("purge expired sessions"):
        result = db.session.execute(
            delete(AuthSession)
            .where(or_(AuthSession.expires_at < func.now(), AuthSession.revoked_at < func.now() - retention))
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return result.rowcount
