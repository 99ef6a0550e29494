"""Password hashing with bcrypt, and the rules a new password must meet.

Every verification costs exactly one bcrypt check, whether or not the account
exists or the password is even acceptable, so response times do not reveal which
emails have accounts.
"""

from __future__ import annotations

import functools

import bcrypt
from flask import current_app

MIN_PASSWORD_LENGTH = 12
# bcrypt only reads the first 72 bytes; longer passwords are refused outright
# rather than silently truncated.
MAX_PASSWORD_BYTES = 72


def password_problem(password: str) -> str | None:
    """Why `password` cannot be set, or None if it can."""
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        return "Password must be valid Unicode text."
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(encoded) > MAX_PASSWORD_BYTES:
        return f"Password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt ignores the rest)."
    if "\x00" in password:
        # bcrypt stops reading at a NUL byte: everything after it would be ignored.
        return "Password must not contain NUL characters."
    return None


def _rounds() -> int:
    return current_app.config["BCRYPT_ROUNDS"]


def hash_password(password: str) -> str:
    """Hash a new password, which must meet today's rules."""
    problem = password_problem(password)
    if problem:
        raise ValueError(problem)
    return rehash(password)


def rehash(password: str) -> str:
    """Hash an existing password, just verified, at the configured cost.

    No rules: a password set under older rules (say, shorter) must keep working
    when BCRYPT_ROUNDS goes up. verify_password has already refused anything
    bcrypt cannot take (over 72 bytes, NUL).
    """
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(_rounds())).decode("ascii")


@functools.cache
def _dummy_hash(rounds: int) -> bytes:
    # A fixed hash at the configured cost, checked when there is no real hash,
    # so that an unknown email costs the same single bcrypt check as a known one.
    return bcrypt.hashpw(b"wafaa-dummy-password", bcrypt.gensalt(rounds))


def warm_up() -> None:
    """Compute the dummy hash now, so the first unknown-email login is not slower."""
    _dummy_hash(_rounds())


def verify_password(password: str, password_hash: str | None) -> bool:
    """One bcrypt check, always. False for a missing hash or an unusable password."""
    # surrogatepass: a lone surrogate cannot match any stored password, but must
    # cost the same bcrypt check as any other wrong password, not an exception.
    candidate = password.encode("utf-8", "surrogatepass")
    usable = password_hash is not None and len(candidate) <= MAX_PASSWORD_BYTES and b"\x00" not in candidate
    if not usable:
        bcrypt.checkpw(b"wafaa-dummy-password", _dummy_hash(_rounds()))
        return False
    return bcrypt.checkpw(candidate, password_hash.encode("ascii"))


def needs_rehash(password_hash: str) -> bool:
    """True when the stored hash is cheaper than the configured cost."""
    try:
        rounds = int(password_hash.split("$")[2])
    except (IndexError, ValueError):
        return True
    return rounds < _rounds()
