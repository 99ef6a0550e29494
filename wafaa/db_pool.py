"""Connection pool hygiene: check a pooled connection that sat idle before reusing it;
and the one statement that runs on a pooled connection outside the ORM.

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
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError

from wafaa.extensions import db

IDLE_PING_SECONDS = 5.0


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine

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


def fetch_one(statement: str, params: tuple) -> tuple | None:
    """Run one statement on a pooled connection, outside any transaction of ours.

    For the request identity check only (wafaa.security): the statement is a call
    of a function that sets its own role and tenant (migration 0004), and on its
    own it is one prepared statement in one round trip, in its own implicit
    transaction.
    """
    pooled = db.engine.raw_connection()
    try:
        with pooled.driver_connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchone()
    except psycopg.OperationalError:
        pooled.invalidate()  # a broken connection must not go back to the pool
        raise
    finally:
        pooled.close()
