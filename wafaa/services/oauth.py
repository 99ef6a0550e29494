"""The OAuth 2 password grant (RFC 6749 section 4.3): the login, for OAuth clients.

Swagger UI's "Authorize" dialog, and any OAuth library, log in by posting a form
to the token endpoint. It is the same login as POST /auth/login, the same
function (wafaa.services.sessions.login) with the same limits, throttling, gate
and audit; only the words of a refusal are the OAuth ones (section 5.2), inside
the service's one error shape: `code` carries the RFC's `error`.
"""

from __future__ import annotations

from wafaa.errors import ApiError
from wafaa.services import sessions

PASSWORD_GRANT = "password"


class UnsupportedGrantType(ApiError):
    status, code = 400, "unsupported_grant_type"
    message = f"Only grant_type={PASSWORD_GRANT} is supported: log in with your email as username and your password."


class InvalidGrant(ApiError):
    """Every failed login, as RFC 6749 names it (400 invalid_grant); it says no
    more than the JSON login's 401 does."""

    status, code, message = 400, "invalid_grant", sessions.InvalidCredentials.message


def password_grant(username: str, password: str) -> dict:
    try:
        return sessions.login(username, password)
    except sessions.InvalidCredentials:
        raise InvalidGrant() from None
