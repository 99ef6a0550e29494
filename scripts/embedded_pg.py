"""The embedded PostgreSQL (pgserver) used when no DATABASE_URL is given.

    python scripts/embedded_pg.py start [--data instance/pgdata] [--database wafaa]
        starts the server if it is not running, creates the database if missing,
        and prints its URL;
    python scripts/embedded_pg.py stop [--data instance/pgdata]

The server listens on a Unix socket only, and keeps its data under --data between
runs. It is a development convenience; production uses a real PostgreSQL server.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent

with warnings.catch_warnings():
    # "XDG_RUNTIME_DIR is not set": harmless, pgserver falls back to /tmp.
    warnings.simplefilter("ignore")
    import pgserver


def start(data: Path, database: str, cleanup_mode: str | None = None) -> str:
    data.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode=cleanup_mode)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return server.get_uri(database)


def stop(data: Path) -> None:
    if (data / "postmaster.pid").exists():
        pgserver.get_server(data, cleanup_mode="stop").cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--data", type=Path, default=ROOT / "instance" / "pgdata")
    parser.add_argument("--database", default="wafaa")
    args = parser.parse_args()
    if args.command == "start":
        print(start(args.data.resolve(), args.database))
    else:
        stop(args.data.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
