"""Checks every request passes before a view sees it, and headers every response gets.

Registered before flask-cors and flask-limiter, so `finish_headers` runs after
theirs (Flask runs after_request hooks in reverse order of registration).
"""

from flask import Flask, Response, current_app, g, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from wafaa.errors import ApiError, ServiceUnavailable
from wafaa.schemas.common import json_depth

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# No body of this API is nested beyond a few levels (settings: 8); deeper ones are
# refused before any code walks them (a recursive walk would exhaust the stack).
MAX_JSON_DEPTH = 32


# The app's own limits on a request's head, below gunicorn's (gunicorn.conf.py:
# twice these), so that the app answers, in the error format and with a request
# id; gunicorn's bare HTML 414/431 remain only as a backstop far above.
MAX_URL_LENGTH = 4094
MAX_HEADER_FIELD_BYTES = 8190
MAX_HEADER_FIELDS = 100
_CGI_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


# The one endpoint whose body is a form, not JSON: RFC 6749's token endpoint,
# which OAuth clients (Swagger UI's Authorize) post form-encoded. Every other
# endpoint keeps refusing forms.
FORM_ENDPOINTS = frozenset({"auth.Token"})
FORM = "application/x-www-form-urlencoded"


class NotAForm(ApiError):
    status, code = 415, "unsupported_media_type"
    message = f"The request body must be form-encoded (Content-Type: {FORM})."


class UriTooLong(ApiError):
    status, code, message = 414, "uri_too_long", f"The URL is longer than {MAX_URL_LENGTH} characters."


class HeadersTooLarge(ApiError):
    status, code = 431, "request_header_fields_too_large"
    message = f"At most {MAX_HEADER_FIELDS} header fields of {MAX_HEADER_FIELD_BYTES} bytes each."


def check_head() -> None:
    """414 for a URL, 431 for headers, beyond the app's limits."""
    environ = request.environ
    url = environ.get("RAW_URI") or request.full_path
    if len(url) > MAX_URL_LENGTH:
        raise UriTooLong()
    # The header fields as the WSGI environ holds them (HTTP_<NAME>, and the two
    # CGI names), measured there: a name keeps its length as an environ key.
    count = 0
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            name_length = len(key) - 5
        elif key in _CGI_HEADERS:
            name_length = len(key)
        else:
            continue
        count += 1
        if count > MAX_HEADER_FIELDS or name_length + len(value) + 2 > MAX_HEADER_FIELD_BYTES:
            raise HeadersTooLarge()


def check_body() -> None:
    """413 for a body over MAX_CONTENT_LENGTH, 415 for a body that is not JSON
    (not a form, at FORM_ENDPOINTS), 400 for a body that is not valid JSON or is
    nested too deeply.

    Werkzeug only enforces the size limit when the body is read, and webargs
    silently ignores a body of another media type (the fields would then be
    reported missing); both are answered here, before any work is done.
    """
    if request.method not in _BODY_METHODS or request.routing_exception is not None:
        return  # no route takes it: its 404 or 405 comes first, the body unread
    length = request.content_length
    if length is not None and length > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    # Any Transfer-Encoding means a body of unknown length ("gzip, chunked" too).
    has_body = bool(length) or (length is None and "Transfer-Encoding" in request.headers)
    if not has_body:
        return
    if request.endpoint in FORM_ENDPOINTS:
        if request.mimetype != FORM:
            raise NotAForm()
        return  # Werkzeug's form parser enforces the size limits itself
    if not request.is_json:
        raise UnsupportedMediaType()
    # Read (and keep, for the parsers) the body now.
    data = request.get_data(cache=True)
    if (
        length is None
        and len(data) >= current_app.config["MAX_CONTENT_LENGTH"]
        and request.environ["wsgi.input"].read(1)
    ):
        # Chunked: no length to check, and Werkzeug stops reading at the limit
        # without complaint, so the parser would see a truncated body (a 400).
        raise RequestEntityTooLarge()
    # Parsed here, so that no parser behind (webargs, flask-jwt-extended, the
    # limiter's account key) meets a body it would crash on rather than refuse;
    # Flask keeps the result for the readers of request.get_json().
    try:
        too_deep = json_depth(request.get_json()) > MAX_JSON_DEPTH
    except RecursionError:
        too_deep = True
    except BadRequest:  # not JSON, or JSON Python refuses (say, a 5,000-digit integer)
        raise ApiError("The request body is not valid JSON.", details={"json": ["Invalid JSON body."]}) from None
    if too_deep:
        raise ApiError(
            "The request body is nested too deeply.", details={"json": [f"At most {MAX_JSON_DEPTH} levels."]}
        )


# Every response's security headers, unless a view chose its own.
_DEFAULT_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
# Responses of the API carry tokens and tenant data: never cache them.
_API_HEADERS = (*_DEFAULT_HEADERS, ("Cache-Control", "no-store"))


def finish_headers(response: Response) -> Response:
    """Runs after flask-cors and flask-limiter have added theirs. Every response
    passes here: the headers present are listed once, and the missing ones added,
    instead of a search of the header list per header."""
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    # flask-limiter puts Retry-After (its window's reset) on every response; it
    # means something only on 429 and 503, and a 503 keeps the app's own value.
    if response.status_code == 503:
        headers["Retry-After"] = g.get("retry_after") or ServiceUnavailable.headers["Retry-After"]
    elif response.status_code != 429 and "retry-after" in present:
        del headers["Retry-After"]
    if current_app.config["CORS_ORIGINS"]:
        # The answer depends on the Origin header (allowed or not) even when only
        # one origin is allowed, which flask-cors does not mark: caches must know.
        if "vary" in present:
            response.vary.add("Origin")
        else:
            headers.add("Vary", "Origin")
    for name, value in _API_HEADERS if request.path.startswith("/api/") else _DEFAULT_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    return response


class NoCookieSessions(SessionInterface):
    """The API authenticates with bearer tokens and keeps no cookie session: none
    is read or signed per request (Flask's default opens one for every request),
    and `flask.session` is Flask's read-only null session."""

    def open_session(self, app: Flask, request) -> None:
        return None

    def save_session(self, app: Flask, session, response: Response) -> None:
        return None


def init_app(app: Flask) -> None:
    app.session_interface = NoCookieSessions()
    app.before_request(check_head)
    app.before_request(check_body)
    app.after_request(finish_headers)
