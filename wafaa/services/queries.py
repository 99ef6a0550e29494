"""Query helpers shared by the services: lookup by id (404) and pagination."""

from __future__ import annotations

import math
import uuid
from typing import TypeVar

from sqlalchemy import Select, func

from wafaa.errors import NotFound
from wafaa.extensions import db

Model = TypeVar("Model")


def get_or_404(model: type[Model], ident: uuid.UUID, *, for_update: bool = False) -> Model:
    """`for_update`: lock the row and re-read it, before changing it (concurrent
    changes wait instead of working from a stale copy)."""
    # session.get goes through the tenant criteria (wafaa.tenancy): another
    # tenant's id finds nothing, exactly like an id that does not exist.
    # FOR NO KEY UPDATE: ids never change, and FOR UPDATE would also block other
    # transactions' foreign-key checks on the row (an audit row, a session naming
    # it), which is how a tenant change and a login deadlocked.
    lock = {"key_share": True} if for_update else None
    obj = db.session.get(model, ident, with_for_update=lock, populate_existing=for_update)
    if obj is None:
        raise NotFound()
    return obj


def page_of(statement: Select, page: int, page_size: int) -> dict:
    """One page of `statement`'s entities, with the totals over all pages.

    The total rides along on every row (`count(*) OVER ()`), so a page costs one
    query; only a page past the end, which has no rows to carry it, needs a count.
    """
    rows = db.session.execute(
        statement.add_columns(func.count().over().label("total")).limit(page_size).offset((page - 1) * page_size)
    ).all()
    if rows:
        total = rows[0].total
    else:
        # Only count(*): a subquery of the entity would select every column,
        # including those the request role may not read.
        total = db.session.scalar(statement.with_only_columns(func.count(), maintain_column_froms=True).order_by(None))
    return {
        "items": [row[0] for row in rows],
        "page": page,
        "page_size": page_size,
        "total": total,
        "pages": math.ceil(total / page_size),
    }


def no_precondition(resource) -> None:
    """A change the client attached no condition to (no If-Match: wafaa.etags)."""
