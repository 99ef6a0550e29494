"""Connection pool hygiene: check a pooled connection that sat idle before reusing it;
and the hot-path functions, called on a pooled connection outside the ORM.

SQLAlchemy's `pool_pre_ping` checks every checkout, which is one more round trip
on every request. A connection reused milliseconds after its last request cannot
have gone stale unnoticed; the ones that do are those that sat idle while
PostgreSQL restarted or a proxy dropped them. So only a connection idle for more
than IDLE_PING_SECONDS is pinged, and a failed ping makes the pool discard it and
connect afresh: after a database restart, requests succeed again without restarting
the app. (A connection that breaks mid-request fails that request with 503, and
SQLAlchemy then recycles the whole pool.)
"""

from __future__ import annotations

import time

import psycopg
from flask import Flask
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError

from wafaa.errors import PREPARED_STATEMENT_LOST
from wafaa.extensions import db

IDLE_PING_SECONDS = 5.0
_IN_BLOCK = "wafaa_hot_path_in_transaction_block"


def init_app(app: Flask) -> None:
    statement_timeout_ms = int(app.config["DB_STATEMENT_TIMEOUT_MS"])
    with app.app_context():
        engine = db.engine
        engines = list(db.engines.values())  # the schema owner's too (DB_PREPARE_THRESHOLD is for both)

    @event.listens_for(engine, "connect")
    def _default_statement_timeout(dbapi_connection, record) -> None:
        # The connection's default, for what runs outside our transactions (the
        # hot-path functions); request transactions set it again, and the system
        # scope lifts it (wafaa.tenancy).
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {statement_timeout_ms}")
            # On Citus (wafaa.citus), a function's SET LOCAL reaches the workers
            # only inside a transaction block: see call_hot_path.
            cursor.execute("SELECT current_setting('citus.propagate_set_commands', true) = 'local'")
            record.info[_IN_BLOCK] = bool(cursor.fetchone()[0])
        if not dbapi_connection.autocommit:
            dbapi_connection.commit()

    def _discard_lost_preparation(context) -> None:
        # psycopg believes the statement is prepared on this connection, so it
        # would fail again on each use: the connection must not be reused.
        if getattr(context.original_exception, "sqlstate", None) in PREPARED_STATEMENT_LOST:
            context.is_disconnect = True

    for each in engines:
        event.listen(each, "handle_error", _discard_lost_preparation)

    @event.listens_for(engine, "checkin")
    def _mark_idle(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure: this connection is not usable
            raise DisconnectionError("idle connection failed its ping") from error


# The functions of wafaa/sql that the service calls on their own, outside any
# transaction of ours: each is SECURITY DEFINER and checks its own arguments.
# Anything else run this way would be bound to no tenant (and see nothing), but
# the list keeps the hot path what it says.
HOT_PATH_FUNCTIONS = frozenset({"wafaa_request_identity", "wafaa_login_salt", "wafaa_login"})


def call_hot_path(function: str, *args) -> tuple | None:
    """The first row of a hot-path function, in one round trip on a pooled
    connection: one prepared statement in its own implicit transaction, committed
    when it returns."""
    if function not in HOT_PATH_FUNCTIONS:
        raise ValueError(f"{function} is not a hot-path function")
    placeholders = ", ".join(["%s"] * len(args))
    pooled = db.engine.raw_connection()
    try:
        connection = pooled.driver_connection
        if not connection.autocommit or connection.info.transaction_status != TransactionStatus.IDLE:
            # Inside a transaction the function's role and tenant would outlive
            # the call, and a rollback on return to the pool would undo its writes.
            raise RuntimeError("hot-path functions run on an idle autocommit connection")
        with connection.cursor() as cursor:
            if not pooled.info.get(_IN_BLOCK):
                cursor.execute(f"SELECT * FROM public.{function}({placeholders})", args)
                return cursor.fetchone()
            # Citus sends a SET LOCAL to the workers only within BEGIN ... COMMIT
            # (the functions switch app.system with it): two more round trips there.
            with connection.transaction():
                cursor.execute(f"SELECT * FROM public.{function}({placeholders})", args)
                return cursor.fetchone()
    except psycopg.Error as error:
        if isinstance(error, psycopg.OperationalError) or error.sqlstate in PREPARED_STATEMENT_LOST:
            pooled.invalidate()  # a broken connection must not go back to the pool
        raise
    finally:
        pooled.close()
