"""The one error shape, and every handler that produces it.

Whatever fails (routing, body parsing, validation, tokens, rate limits, the
database, an unexpected exception) the client gets

    {"error": {"status", "code", "message", "details", "request_id"}}

with `Content-Type: application/json`. 5xx bodies never carry internals, and the
log line for them names the exception type and where it was raised, never a
traceback or the statement's parameters.
"""

from __future__ import annotations

import logging
import traceback
from http import HTTPStatus
from pathlib import Path

import psycopg
from flask import Flask, Response, current_app, g, has_request_context, jsonify
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from wafaa.logging import current_request_id

log = logging.getLogger("wafaa.errors")

PACKAGE_DIR = Path(__file__).resolve().parent

# Codes for statuses that have no more specific code of their own.
STATUS_CODES = {
    400: "bad_request",
    401: "token_missing",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}

STATUS_MESSAGES = {
    400: "The request could not be understood.",
    401: "Authentication is required.",
    403: "You are not allowed to do this.",
    404: "The requested resource was not found.",
    405: "The method is not allowed for this resource.",
    409: "The request conflicts with the current state of the resource.",
    412: "The resource has changed since you read it (If-Match). Read it again and retry.",
    415: "The request body must be JSON (Content-Type: application/json).",
    422: "The request is invalid.",
    429: "Too many requests. Slow down and retry later.",
    500: "An unexpected error occurred.",
    503: "The service is temporarily unavailable. Retry shortly.",
}

# PostgreSQL SQLSTATEs of integrity errors, and what they mean to a client.
UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"


def error_response(
    status: int,
    code: str | None = None,
    message: str | None = None,
    details: dict | None = None,
    headers: dict | None = None,
) -> Response:
    code = code or STATUS_CODES.get(status) or _status_slug(status)
    if has_request_context():
        g.error_code = code  # what the request's metrics count it as (wafaa.metrics)
    body = {
        "error": {
            "status": status,
            "code": code,
            "message": message or STATUS_MESSAGES.get(status) or HTTPStatus(status).phrase,
            "details": details,
            "request_id": current_request_id(),
        }
    }
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _status_slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


class ApiError(Exception):
    """An expected failure with a client-facing status, code and message."""

    status = 400
    code = "bad_request"
    message = STATUS_MESSAGES[400]
    headers: dict | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict | None = None,
        keep_changes: bool = False,
    ):
        super().__init__(message or self.message)
        if message:
            self.message = message
        if code:
            self.code = code
        self.details = details
        # The request's changes so far are committed although it fails
        # (wafaa.unit_of_work): a refusal that is itself recorded.
        self.keep_changes = keep_changes

    def response(self) -> Response:
        if self.headers and "Retry-After" in self.headers and has_request_context():
            g.retry_after = self.headers["Retry-After"]  # not flask-limiter's (wafaa.http_guards)
        return error_response(self.status, self.code, self.message, self.details, self.headers)


class NotFound(ApiError):
    status, code, message = 404, "not_found", STATUS_MESSAGES[404]


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", STATUS_MESSAGES[403]


class Conflict(ApiError):
    status, code, message = 409, "conflict", STATUS_MESSAGES[409]


class PreconditionFailed(ApiError):
    status, code, message = 412, "precondition_failed", STATUS_MESSAGES[412]


class ValidationFailed(ApiError):
    """A rule a schema cannot express (say, the merged settings are too large)."""

    status, code, message = 422, "validation_error", STATUS_MESSAGES[422]


class Unauthorized(ApiError):
    status, code, message = 401, "token_invalid", "The access token is invalid."
    headers = {"WWW-Authenticate": "Bearer"}


class ServiceUnavailable(ApiError):
    status, code, message = 503, "service_unavailable", STATUS_MESSAGES[503]
    headers = {"Retry-After": "5"}  # wafaa.http_guards keeps it from flask-limiter


class Busy(ServiceUnavailable):
    """More work of one kind (logins) than this process takes at once: retry in a
    second, and the rest of the API is not kept waiting meanwhile."""

    message = "The service is busy with other logins. Retry in a moment."
    headers = {"Retry-After": "1"}


class TooManyRequests(ApiError):
    status, code, message = 429, "rate_limited", STATUS_MESSAGES[429]

    def __init__(self, message: str | None = None, *, retry_after: int, **kwargs):
        super().__init__(message, **kwargs)
        self.headers = {"Retry-After": str(max(1, retry_after))}


def _handle_api_error(error: ApiError) -> Response:
    return error.response()


def _handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {}
    details = None
    message = None
    data = getattr(error, "data", None) or {}
    if status == 405:
        allow = dict(error.get_headers()).get("Allow")
        if allow:
            headers["Allow"] = allow
    headers.update(data.get("headers") or {})  # webargs/flask-smorest abort(..., headers=...)
    if "messages" in data:  # webargs validation errors, keyed by location
        details = data["messages"]
    if status == 413:
        message = f"The request body is larger than the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes."
    if status == 400 and details and "json" in details:
        message = "The request body is not valid JSON."
    code = None
    if status == 400 and details and "form" in details:
        # Only the OAuth token endpoint takes a form (wafaa.http_guards), and
        # parses it with a 400: RFC 6749's name for a bad token request.
        code, message = "invalid_request", STATUS_MESSAGES[422]
    if status >= 500:
        _log_exception(error)
    return error_response(status, code, message, details, headers)


def _handle_integrity_error(error: sa_exc.IntegrityError) -> Response:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in (UNIQUE_VIOLATION, FOREIGN_KEY_VIOLATION):
        # A race lost to a concurrent request, or a reference that vanished. The
        # constraint's name would tell which row exists: it stays in the log.
        log.info("integrity conflict", extra={"sqlstate": sqlstate, "constraint": _constraint(error)})
        return error_response(409)
    log.warning("integrity error", extra={"sqlstate": sqlstate, "constraint": _constraint(error)})
    return error_response(422, message="A value is not acceptable.")


def _handle_data_error(error: Exception) -> Response:
    # Input the database refused as data (out of range, unsupported character):
    # the schemas should have caught it, so it is logged to be fixed there.
    # (SQLAlchemy wraps psycopg's error in .orig; a hot-path call raises it bare.)
    sqlstate = getattr(getattr(error, "orig", error), "sqlstate", None)
    log.warning("data error", extra={"sqlstate": sqlstate})
    return error_response(422, message="A value is not acceptable.")


def _handle_database_unavailable(error: Exception) -> Response:
    # Connection refused or lost, a pool that stayed exhausted for pool_timeout,
    # or a statement cut off by statement_timeout: the client may retry.
    log.error("database unavailable", extra=_exception_fields(error))
    if isinstance(error, sa_exc.TimeoutError):
        from wafaa.metrics import pool_timed_out  # the metrics import this module

        pool_timed_out()
    return ServiceUnavailable().response()


# A server-side prepared statement that is not where psycopg left it: the
# connection goes through PgBouncer in transaction mode (before 1.21) while
# DB_PREPARE_THRESHOLD turned preparation on, so the next transaction ran on
# another server connection. The connection is discarded (wafaa.db_pool).
PREPARED_STATEMENT_LOST = frozenset({"42P05", "26000"})  # duplicate_prepared_statement, invalid_sql_statement_name


def _handle_programming_error(error: Exception) -> Response:
    if getattr(getattr(error, "orig", error), "sqlstate", None) not in PREPARED_STATEMENT_LOST:
        return _handle_unexpected(error)
    log.error(
        "prepared statement lost: set DB_PREPARE_THRESHOLD=off behind PgBouncer in transaction mode",
        extra=_exception_fields(error),
    )
    return ServiceUnavailable().response()


# What Citus says, as an internal error (XX000), when a worker node it needs does
# not answer, or a connection to one broke while the node was away: unavailable,
# not a bug. (A refused connection it reports as a connection failure already.)
CITUS_NODE_UNREACHABLE = (
    "failure on connection marked as essential",
    "connection to the remote node",
    "could not establish any connections to the node",
)


def _handle_internal_error(error: Exception) -> Response:
    message = str(getattr(error, "orig", None) or error)
    if any(fragment in message for fragment in CITUS_NODE_UNREACHABLE):
        return _handle_database_unavailable(error)
    return _handle_unexpected(error)


def _handle_limiter_unavailable(error: Exception) -> Response:
    # The rate limiter's storage (Redis) is unreachable. The request is refused
    # rather than served unlimited: an outage of the limiter must not open the
    # door to password guessing.
    log.error("rate limit storage unavailable", extra=_exception_fields(error))
    return ServiceUnavailable().response()


def _handle_unexpected(error: Exception) -> Response:
    _log_exception(error)
    from wafaa.error_reporting import report  # it needs nothing of this module

    report(error)
    return error_response(500)


def _constraint(error: sa_exc.DBAPIError) -> str | None:
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


def _exception_fields(error: BaseException) -> dict:
    """Type and place of an exception, without its arguments or a traceback."""
    fields = {"error_type": f"{type(error).__module__}.{type(error).__qualname__}"}
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(PACKAGE_DIR)]
    where = (ours or frames)[-1:] if frames else []
    if where:
        frame = where[0]
        fields["error_location"] = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
    return fields


def _log_exception(error: BaseException) -> None:
    original = getattr(error, "original_exception", None) or error
    log.error("unhandled exception", extra=_exception_fields(original))


def init_app(app: Flask) -> None:
    # Registered after flask-smorest's own HTTPException handler, so this one wins.
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(sa_exc.IntegrityError, _handle_integrity_error)
    app.register_error_handler(sa_exc.DataError, _handle_data_error)
    app.register_error_handler(psycopg.DataError, _handle_data_error)
    # psycopg's own OperationalError comes from the hot-path functions, called
    # beneath SQLAlchemy (wafaa.db_pool.call_hot_path).
    for unavailable in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, psycopg.OperationalError):
        app.register_error_handler(unavailable, _handle_database_unavailable)
    for programming in (sa_exc.ProgrammingError, psycopg.ProgrammingError):
        app.register_error_handler(programming, _handle_programming_error)
    for internal in (sa_exc.InternalError, psycopg.errors.InternalError_):
        app.register_error_handler(internal, _handle_internal_error)
    for unavailable in (RedisError, StorageError):
        app.register_error_handler(unavailable, _handle_limiter_unavailable)
    app.register_error_handler(Exception, _handle_unexpected)
