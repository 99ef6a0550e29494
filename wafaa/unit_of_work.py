"""The framework owns a request's transaction.

A view and the services it calls never commit: the request commits once, when
the view returns (before its result is rendered, so the rendering sees ids and
server defaults), and rolls back when the view raised. `Blueprint.response`
(wafaa.api) wraps every view in `transactional`; `UnitOfWorkFlask` does the same
around any other view. An `ApiError` raised with `keep_changes=True` commits what was done
before it (a refusal that is itself recorded, such as a replayed refresh token
revoking its session). A request that would still end with changes neither
committed nor rolled back (made after the commit, by a hook) fails with a 500
instead of answering success; `tests/test_unit_of_work.py` shows each case.
"""

from __future__ import annotations

import functools

from flask import Flask, Response
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from wafaa.errors import ApiError
from wafaa.extensions import db

_WRITES = "wafaa_unsaved_writes"


class UnsavedChangesError(RuntimeError):
    """A request ended with changes that were neither committed nor rolled back."""


def _session() -> Session | None:
    return db.session() if db.session.registry.has() else None


def commit() -> None:
    session = _session()
    if session is not None:
        session.commit()


def rollback() -> None:
    session = _session()
    if session is not None:
        session.rollback()


def unsaved_changes(session: Session) -> bool:
    return bool(session.new or session.dirty or session.deleted or session.info.get(_WRITES))


def _run(func, *args, **kwargs):
    try:
        result = func(*args, **kwargs)
    except ApiError as error:
        commit() if error.keep_changes else rollback()
        raise
    except BaseException:
        rollback()
        raise
    commit()
    return result


def transactional(func):
    """Commit when `func` returns, roll back when it raises."""

    @functools.wraps(func)
    def unit_of_work(*args, **kwargs):
        return _run(func, *args, **kwargs)

    return unit_of_work


class UnitOfWorkFlask(Flask):
    """Flask, with each view's dispatch as one unit of work."""

    def dispatch_request(self):
        return _run(super().dispatch_request)


def _refuse_unsaved(response: Response) -> Response:
    session = _session()
    if session is not None and unsaved_changes(session):
        session.rollback()
        raise UnsavedChangesError("the request ended with unsaved changes (made after its commit)")
    return response


def _note_flush(session: Session, flush_context) -> None:
    session.info[_WRITES] = True


def _note_bulk_write(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WRITES] = True


def _forget_writes(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WRITES, None)


def init_app(app: Flask) -> None:
    app.after_request(_refuse_unsaved)
    # db.session is shared by every app of the process: listen once.
    for name, listener in (
        ("after_flush", _note_flush),
        ("do_orm_execute", _note_bulk_write),
        ("after_transaction_end", _forget_writes),
    ):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)
