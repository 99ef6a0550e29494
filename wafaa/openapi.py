"""What the OpenAPI document says beyond the views: the headers every answer
carries, the errors any body can meet, an example of each error, and the
document's own description and server.

A generated client (tests/test_generated_client.py) and Spectral
(tests/test_openapi_lint.py) read the document; Schemathesis
(tests/test_schemathesis_run.py) checks that the service does what it says.
"""

from __future__ import annotations

from http import HTTPStatus

from apispec import BasePlugin
from flask import Flask

from wafaa.errors import STATUS_CODES, STATUS_MESSAGES

DESCRIPTION = """\
The API of Wafaa's multi-tenant back office: log in as an admin of a tenant,
then read and change that tenant, its admins and its audit log.

- **Authentication**: `POST /api/v1/auth/login` returns an access token (send it
  as `Authorization: Bearer <token>`) and a refresh token (for
  `POST /api/v1/auth/refresh` only).
- **Errors**: every 4xx and 5xx has the same JSON body, `{"error": {"status",
  "code", "message", "details", "request_id"}}`; `code` is stable, `message`
  is for people.
- **Limits**: rate-limited operations answer with `RateLimit-Limit`,
  `RateLimit-Remaining` and `RateLimit-Reset` (seconds), and 429 with
  `Retry-After`.
- **Concurrent edits**: send a resource's `ETag` back as `If-Match` (412 when
  it changed meanwhile).
- **Support**: quote the `X-Request-ID` of the answer.
"""

HEADERS = {
    "X-Request-ID": {
        "description": "This request's id (yours, if you sent a valid one): quote it to support",
        "schema": {"type": "string"},
    },
    "RateLimit-Limit": {"description": "Requests allowed in the current window", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the current window", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the window resets", "schema": {"type": "integer"}},
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "The scheme to authenticate with: `Bearer`", "schema": {"type": "string"}},
    "Location": {"description": "The URL of the resource created", "schema": {"type": "string"}},
}
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# Extra headers of error answers, by status.
ERROR_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After", *RATE_LIMIT_HEADERS), 503: ("Retry-After",)}

# Any request with a body can meet these before its view runs (wafaa.http_guards).
BODY_ERRORS = {
    400: "The body is not valid JSON, or is nested too deeply",
    413: "The body is larger than the service accepts",
    415: "The body is not JSON (`Content-Type: application/json`)",
}
ERROR_DETAILS = {
    400: {"json": ["Invalid JSON body."]},
    422: {"json": {"email": ["Not a valid email address."]}},
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/headers/{name}"}


def _headers(*names: str) -> dict:
    return {name: _ref(name) for name in ("X-Request-ID", *names)}


def _status_of(name: str) -> int:
    return 500 if name == "DEFAULT_ERROR" else HTTPStatus[name].value


def error_example(status: int) -> dict:
    return {
        "error": {
            "status": status,
            "code": STATUS_CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_"),
            "message": STATUS_MESSAGES.get(status) or HTTPStatus(status).phrase,
            "details": ERROR_DETAILS.get(status),
            "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        }
    }


class ResponseHeadersPlugin(BasePlugin):
    """Each operation as it is registered: X-Request-ID on its own answers (and
    the rate-limit headers on successes where it is limited, `Location` on 201),
    and the body errors where it takes a body. Most error answers are references
    to shared responses, which `init_app` completes."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            limited = "429" in responses or 429 in responses
            for status, response in responses.items():
                if not isinstance(response, dict) or "$ref" in response:
                    continue  # a shared error response (init_app)
                code = int(status)
                extra = ERROR_HEADERS.get(code, ())
                if code < 300:
                    extra = (*RATE_LIMIT_HEADERS,) if limited else ()
                    extra += ("Location",) if code == 201 else ()
                response["headers"] = {**_headers(*extra), **response.get("headers", {})}
            if "requestBody" in operation:
                for status in BODY_ERRORS:
                    responses.setdefault(str(status), HTTPStatus(status).name)


def init_app(app: Flask, api) -> None:
    """After the blueprints: the shared parts, which only exist once every view
    has asked for them."""
    spec = api.spec
    spec.options["info"] = {"description": DESCRIPTION, "contact": {"name": app.config["APP_NAME"]}}
    # Relative: the API is wherever this document was fetched from (a Host header
    # is not trusted to say where that is).
    spec.options["servers"] = [{"url": "/", "description": "This server"}]
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for status, description in BODY_ERRORS.items():
        name = HTTPStatus(status).name
        if name not in spec.components.responses:
            spec.components.response(
                name, {"description": description, "content": {"application/json": {"schema": "Error"}}}
            )
    for name, response in spec.components.responses.items():
        status = _status_of(name)
        response["headers"] = _headers(*ERROR_HEADERS.get(status, ()))
        response["content"]["application/json"]["example"] = error_example(status)
    # flask-smorest registers it for its own pagination, which this API does not use.
    spec.components.schemas.pop("PaginationMetadata", None)
