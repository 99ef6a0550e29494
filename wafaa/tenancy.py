"""The tenant context and everything that enforces it at the ORM and connection level.

Every unit of database work runs in exactly one *scope*:

* a tenant scope (a request, from its verified token; or `tenant_scope()`): ORM
  selects, updates and deletes of tenant-scoped models get `tenant_id = <tenant>`
  added (relationship loads, `Model.query`, `session.get` and bulk statements
  included), new rows are stamped with the tenant, and a row of another tenant
  cannot be flushed;
* the system scope (`system_scope(reason)`: CLI commands, the seed, the session
  purge, migrations): deliberate cross-tenant work, named so that it is greppable
  and logged;
* no scope: any ORM statement on a tenant-scoped model raises `TenantScopeError`.
  Isolation fails closed.

Underneath, PostgreSQL enforces the same rule with row-level security, which
trusts only a tenant binding SQL cannot forge (wafaa/sql/tenant_binding.sql,
docs/isolation.md). Which connection a transaction uses, and how it opens, follows
from its scope:

* a request's tenant scope: the service's own login role (DATABASE_URL), and the
  transaction is bound through the request's live session
  (`wafaa_bind_session`, with the ids as bind parameters);
* no scope: the service's role, bound to nothing (no rows);
* the system scope: the schema owner (MIGRATION_DATABASE_URL) with `app.system`
  on, which only the owner's policy honours;
* `tenant_scope(tenant_id)` outside a request (operators, tests): the schema
  owner binds the tenant itself, then becomes the request role for the rest of the
  transaction, so the request role's privileges and policies apply.

Every setting is transaction-local: nothing survives on a pooled connection.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, g, has_app_context
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql.util import find_tables

from config import OWNER_BIND
from wafaa.extensions import db
from wafaa.models.base import TenantScoped
from wafaa.models.tenant import Tenant

log = logging.getLogger("wafaa.tenancy")


class TenantScopeError(RuntimeError):
    """Tenant-scoped data was touched outside a matching tenant context (a bug)."""


@dataclass(frozen=True)
class Scope:
    tenant_id: uuid.UUID | None = None
    system_reason: str | None = None
    # A request's (session id, admin id): what binds its transactions to the
    # tenant in the database. None outside requests (the owner binds instead).
    session: tuple[uuid.UUID, uuid.UUID] | None = None

    @property
    def is_system(self) -> bool:
        return self.system_reason is not None


def current_scope() -> Scope | None:
    return g.get("_wafaa_scope") if has_app_context() else None


def current_tenant_id() -> uuid.UUID:
    scope = current_scope()
    if scope is None or scope.tenant_id is None:
        raise TenantScopeError("no tenant context")
    return scope.tenant_id


def _enter(scope: Scope | None) -> None:
    if db.session.registry.has():  # no session yet: nothing to check or clear
        session = db.session()
        if session.in_transaction():
            # A transaction's role and tenant are fixed when it begins; switching
            # scope inside one would run the new scope's statements with the old
            # settings.
            raise TenantScopeError("finish the current transaction before changing the tenant scope")
        # Objects loaded under another scope must not be served from the identity map.
        session.expunge_all()
    if scope is None:
        g.pop("_wafaa_scope", None)
    else:
        g._wafaa_scope = scope


def bind_request_session(tenant_id: uuid.UUID, session_id: uuid.UUID, admin_id: uuid.UUID) -> None:
    """Set the tenant for the rest of the current request, from its verified token;
    the database binds each of its transactions through the token's session."""
    _enter(Scope(tenant_id=tenant_id, session=(session_id, admin_id)))
    g._get_current_object().tenant_id = tenant_id


@contextmanager
def _scoped(scope: Scope) -> Iterator[None]:
    previous = current_scope()
    _enter(scope)
    session = db.session()
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    else:
        # The scope is the unit of work: it commits once, when its block succeeds.
        session.commit()
    finally:
        session.expunge_all()
        if previous is None:
            g.pop("_wafaa_scope", None)
        else:
            g._wafaa_scope = previous


def tenant_scope(tenant_id: uuid.UUID):
    """Work as one tenant outside a request (CLI commands, tests)."""
    return _scoped(Scope(tenant_id=tenant_id))


def system_scope(reason: str):
    """Deliberate cross-tenant work. `reason` names it in logs and code search."""
    log.debug("entering system scope", extra={"reason": reason})
    return _scoped(Scope(system_reason=reason))


# --- ORM layer ---------------------------------------------------------------


def _is_scoped(cls: type) -> bool:
    return issubclass(cls, TenantScoped | Tenant)


def _scoped_mappers(state: ORMExecuteState) -> list:
    return [m for m in state.all_mappers if _is_scoped(m.class_)]


def _scoped_tables_touched(state: ORMExecuteState) -> set[str]:
    """Tenant-scoped tables anywhere in the statement: entities, but also FROM
    clauses, joins, subqueries, CTEs and EXISTS (all_mappers only lists the
    top-level entities)."""
    scoped = {m.local_table.name for m in db.Model.registry.mappers if _is_scoped(m.class_)}
    names = {m.local_table.name for m in _scoped_mappers(state)}
    for table in find_tables(state.statement, include_aliases=True, include_joins=True, include_crud=True):
        name = getattr(getattr(table, "element", table), "name", None)
        if name in scoped:
            names.add(name)
    return names


def _add_tenant_criteria(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete or state.is_insert):
        return
    scope = current_scope()
    transaction_scope = state.session.info.get("wafaa_scope")
    if state.session.in_transaction() and transaction_scope is not None and transaction_scope != scope:
        raise TenantScopeError("statement scope differs from the scope its transaction began with")
    if scope is not None and scope.is_system:
        return
    if scope is None or scope.tenant_id is None:
        touched = _scoped_tables_touched(state)
        if touched:
            raise TenantScopeError(f"query of tenant-scoped {', '.join(sorted(touched))} without a tenant context")
        return
    if state.is_insert:
        if _scoped_mappers(state):
            _check_bulk_insert(state, scope.tenant_id)
        return
    if not hasattr(state.statement, "options"):  # textual SQL: row-level security covers it
        return
    state.statement = state.statement.options(*_tenant_criteria(scope.tenant_id))


@functools.lru_cache(maxsize=1024)
def _tenant_criteria(tenant_id: uuid.UUID) -> tuple:
    """The criteria options of one tenant, built once per tenant (an option is
    immutable, and building one analyses its lambda: a tenth of a list page).

    Added to every ORM statement of the scope, wherever the scoped entities sit
    in it (subqueries, EXISTS, count(*) select_from...); a criteria for an entity
    that is absent costs nothing. Lambdas: SQLAlchemy caches the statement once
    and binds tenant_id per call. propagate_to_loaders (the default) carries the
    criteria into lazy and relationship loads; they get it here as well, because
    a lazy load can start from an object not loaded by a criteria query."""
    return (
        with_loader_criteria(TenantScoped, lambda cls: cls.tenant_id == tenant_id, include_aliases=True),
        with_loader_criteria(Tenant, lambda cls: cls.id == tenant_id, include_aliases=True),
    )


def _check_bulk_insert(state: ORMExecuteState, tenant_id: uuid.UUID) -> None:
    if any(issubclass(m.class_, Tenant) for m in _scoped_mappers(state)):
        raise TenantScopeError("tenants cannot be created inside a tenant scope")
    params = state.parameters
    rows = params if isinstance(params, list) else [params] if params else []
    if not rows or any(row.get("tenant_id") != tenant_id for row in rows):
        raise TenantScopeError("bulk insert rows must carry the current tenant_id")


def _stamp_and_check_flush(session: Session, flush_context, instances) -> None:
    scope = current_scope()
    for obj in session.new:
        _check_new(obj, scope)
    for obj in list(session.dirty) + list(session.deleted):
        _check_existing(obj, scope)


def _check_new(obj: object, scope: Scope | None) -> None:
    if isinstance(obj, Tenant):
        if scope is None or not scope.is_system:
            raise TenantScopeError("tenants are created only in the system scope")
        return
    if not isinstance(obj, TenantScoped):
        return
    related = getattr(obj, "tenant", None)
    declared = obj.tenant_id or (related.id if related is not None else None)
    if scope is None:
        raise TenantScopeError(f"new {type(obj).__name__} without a tenant context")
    if scope.is_system:
        if declared is None:
            raise TenantScopeError(f"system work must name the tenant of a new {type(obj).__name__}")
        return
    if declared is None:
        obj.tenant_id = scope.tenant_id
    elif declared != scope.tenant_id:
        raise TenantScopeError(f"new {type(obj).__name__} belongs to another tenant")


def _check_existing(obj: object, scope: Scope | None) -> None:
    if isinstance(obj, Tenant):
        owner = obj.id
    elif isinstance(obj, TenantScoped):
        history = db.inspect(obj).attrs.tenant_id.history
        if history.deleted and history.added:
            raise TenantScopeError(f"tenant_id of a {type(obj).__name__} cannot change")
        owner = obj.tenant_id
    else:
        return
    if scope is None:
        raise TenantScopeError(f"change to {type(obj).__name__} without a tenant context")
    if not scope.is_system and owner != scope.tenant_id:
        raise TenantScopeError(f"change to a {type(obj).__name__} of another tenant")


def _remember_transaction_scope(session: Session, transaction, connection: Connection) -> None:
    if transaction.parent is None:
        session.info["wafaa_scope"] = current_scope()


def _forget_transaction_scope(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop("wafaa_scope", None)


# --- Connection layer ----------------------------------------------------------


def uses_owner(scope: Scope | None) -> bool:
    """Work that needs the schema owner's connection: the system scope, and a
    tenant scope outside a request (no session to bind through)."""
    return scope is not None and (scope.is_system or scope.session is None)


def engine_for(scope: Scope | None):
    if not uses_owner(scope):
        return db.engine
    owner = db.engines.get(OWNER_BIND)
    if owner is None:
        raise TenantScopeError(
            "operators' work (migrations, CLI, tenant_scope) needs the schema owner's credentials: "
            "set MIGRATION_DATABASE_URL"
        )
    return owner


@dataclass(frozen=True)
class Opening:
    """What a transaction sends before its first statement: SQL texts with
    literals (the first one with BEGIN, one round trip each), then optionally a
    statement whose values are bind parameters (never visible as text to other
    sessions).

    A `SET LOCAL` goes alone in its text: Citus sends the text of the message
    that held it on to the workers (citus.propagate_set_commands = 'local'), and
    must send nothing else."""

    texts: tuple[str, ...]
    bound: tuple[str, tuple] | None = None


# The statement timeout is set with the binding, in the same round trip: the
# connection's default (wafaa.db_pool) is session state, which behind PgBouncer
# belongs to whichever server connection the SET happened to run on.
BIND_SESSION = "SELECT wafaa_bind_session(%s, %s, %s), set_config('statement_timeout', %s, true)"
SYSTEM_ON = "SET LOCAL app.system = 'on'"


@functools.lru_cache(maxsize=4096)
def _owner_opening(scope: Scope, app_role: str, statement_timeout_ms: int) -> tuple[str, ...]:
    if scope.is_system:
        # Operators' work (migrations, purges) with no statement timeout: an index
        # build may legitimately take minutes.
        return ("BEGIN; SELECT set_config('statement_timeout', '0', true)", SYSTEM_ON)
    opening = sql.SQL("BEGIN; SELECT wafaa_private.bind_tenant({}), set_config('statement_timeout', {}, true)")
    bind = opening.format(sql.Literal(str(scope.tenant_id)), sql.Literal(str(statement_timeout_ms))).as_string()
    return (bind, sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app_role)).as_string())


def opening_for(scope: Scope | None, app_role: str, statement_timeout_ms: int) -> Opening:
    if uses_owner(scope):
        return Opening(_owner_opening(scope, app_role, statement_timeout_ms))
    if scope is None or scope.tenant_id is None:
        return Opening(("BEGIN",))  # bound to nothing: no tenant rows at all
    session_id, admin_id = scope.session
    return Opening(("BEGIN",), (BIND_SESSION, (scope.tenant_id, session_id, admin_id, str(statement_timeout_ms))))


_OPENING = "wafaa_opening_statement"


def init_app(app: Flask) -> None:
    app_role = app.config["DB_APP_ROLE"]
    statement_timeout_ms = app.config["DB_STATEMENT_TIMEOUT_MS"]
    with app.app_context():
        engines = list(db.engines.values())
        owner = db.engines.get(OWNER_BIND)

    for engine in engines:
        _listen_for_transactions(engine, is_owner=engine is owner, app_role=app_role, timeout_ms=statement_timeout_ms)

    # db.session is shared by every app of the process: listen once.
    for name, listener in (
        ("do_orm_execute", _add_tenant_criteria),
        ("before_flush", _stamp_and_check_flush),
        ("after_begin", _remember_transaction_scope),
        ("after_transaction_end", _forget_transaction_scope),
    ):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)


def _listen_for_transactions(engine, *, is_owner: bool, app_role: str, timeout_ms: int) -> None:
    @event.listens_for(engine, "begin")
    def _prepare_opening(conn: Connection) -> None:
        # The scope is fixed when the transaction begins; the opening is sent with
        # the transaction's first statement (below), so that a failure is handled
        # like any statement's (translated, and a dead connection invalidated).
        # psycopg runs in autocommit mode: the BEGIN is ours.
        scope = current_scope()
        if uses_owner(scope) != is_owner:
            belongs = "the schema owner's" if uses_owner(scope) else "the service's"
            raise TenantScopeError(f"this scope's work belongs on {belongs} engine")
        conn.info[_OPENING] = opening_for(scope, app_role, timeout_ms)

    @event.listens_for(engine, "before_cursor_execute")
    def _open_transaction(conn: Connection, cursor, statement, parameters, context, executemany) -> None:
        opening = conn.info.pop(_OPENING, None)
        if opening is not None:
            # The literal part is validated (UUID, role name, integer) and quoted
            # by psycopg; without parameters it goes as one simple-query message.
            for text in opening.texts:
                cursor.execute(text)
            if opening.bound is not None:
                cursor.execute(*opening.bound)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _forget_opening(conn: Connection) -> None:
        if not conn.invalidated:  # an invalidated connection's info is gone with it
            conn.info.pop(_OPENING, None)
