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
from collections.abc import Callable

from flask import Response, request
from marshmallow import Schema

from wafaa.errors import PreconditionFailed
from wafaa.extensions import db

# The canonical form (sorted keys, no spaces); one encoder, not one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _representation(schema: Schema, obj) -> str:
    """The JSON the API returns for `obj`, in one canonical form, which its tag is
    the digest of."""
    return _CANONICAL.encode(schema.dump(obj))


def _tag(representation: str) -> str:
    return '"' + hashlib.sha256(representation.encode()).hexdigest()[:32] + '"'


def etag_of(schema: Schema, obj) -> str:
    """A strong tag: the digest of the representation as the API returns it."""
    return _tag(_representation(schema, obj))


def if_match(schema: Schema) -> Callable[[object], None]:
    """The request's precondition on a resource, for the service to check once it
    holds the row's lock: raises 412 unless If-Match is absent, `*`, or names the
    resource's current tag (strong comparison: weak tags never match)."""
    header = request.headers.get("If-Match")

    def check(obj) -> None:
        if header is None:
            return
        tags = {tag.strip() for tag in header.split(",")}
        if "*" not in tags and etag_of(schema, obj) not in tags:
            raise PreconditionFailed()

    return check


def tagged(schema: Schema, obj, status: int = 200, headers: dict | None = None) -> Response:
    """A view's answer with the representation's ETag: the body is the tagged
    representation itself, dumped once (flask-smorest passes a response through).
    Pending changes are flushed first, so that columns the database sets
    (updated_at) are in it (a request that never opened the ORM session has
    none, and opens none here)."""
    if db.session.registry.has():
        db.session.flush()
    body = _representation(schema, obj)
    return Response(body + "\n", status, {**(headers or {}), "ETag": _tag(body)}, mimetype="application/json")
