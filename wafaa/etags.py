"""Entity tags: what a representation is now, so that two people editing the same
resource cannot silently overwrite each other.

GET answers with an `ETag`, a digest of the representation it returns. A PATCH
(or DELETE) that sends `If-Match` with that tag is applied only if the resource is
still what the client saw: the comparison runs under the row's lock, inside the
change's transaction, so two requests holding the same tag cannot both pass. A
stale tag is 412 `precondition_failed`. Without `If-Match` a change applies as
before (the tag is an offer, not a requirement).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from flask import request
from marshmallow import Schema

from wafaa.errors import ApiError, PreconditionFailed
from wafaa.extensions import db

# RFC 9110's If-Match: `*` or a list of entity tags (weak ones never match). The
# same pattern is in the OpenAPI document; a header that is not this is a
# malformed request (400), not a stale tag (412).
_ETAG = r'(W/)?"[!#-~]*"'
IF_MATCH_PATTERN = rf"^\s*(\*|{_ETAG}(\s*,\s*{_ETAG})*)\s*$"


def etag_of(schema: Schema, obj) -> str:
    """A strong tag: the digest of the representation as the API returns it."""
    body = json.dumps(schema.dump(obj), sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def if_match(schema: Schema) -> Callable[[object], None]:
    """The request's precondition on a resource, for the service to check once it
    holds the row's lock: raises 412 unless If-Match is absent, `*`, or names the
    resource's current tag (strong comparison: weak tags never match)."""
    header = request.headers.get("If-Match")
    if header is not None and not re.match(IF_MATCH_PATTERN, header):
        raise ApiError(
            "If-Match must be `*` or entity tags as sent in ETag.",
            code="invalid_if_match",
            details={"headers": {"If-Match": ["Not an entity tag list."]}},
        )

    def check(obj) -> None:
        if header is None:
            return
        tags = {tag.strip() for tag in header.split(",")}
        if "*" not in tags and etag_of(schema, obj) not in tags:
            raise PreconditionFailed()

    return check


def tagged(schema: Schema, obj, status: int = 200, headers: dict | None = None):
    """A view's answer with the representation's ETag. Pending changes are
    flushed first, so that columns the database sets (updated_at) are in it."""
    db.session.flush()
    return obj, status, {**(headers or {}), "ETag": etag_of(schema, obj)}
