"""A PgBouncer of the tests' own, in transaction pooling mode, in front of the test
database: a free port on 127.0.0.1, a few server connections, started and stopped
by the tests (Debian's `pgbouncer` package; docs/scaling.md).

PgBouncer refuses to run as root; started by root (CI), it drops to the user of
the PostgreSQL server (`postgres`, or the owner of an embedded server's socket
directory) with `-u`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from sqlalchemy.engine import make_url

from tests.servers import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def installed() -> bool:
    return Path(BINARY).exists()


class PgBouncer:
    """`url(database_url)` gives the same role and database through this PgBouncer."""

    def __init__(self, upstream_url: str, *, users: list[str], pool_size: int = 2) -> None:
        upstream = make_url(upstream_url)
        self.database = upstream.database
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.process: subprocess.Popen | None = None
        host = upstream.query.get("host") or upstream.host or "127.0.0.1"
        # Started by root, PgBouncer runs as the server's own user: the one that
        # owns its socket directory (an embedded server's), else `postgres`.
        self.run_as = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "postgres"
        passwords = {upstream.username: upstream.password or ""}
        (self.directory / "users.txt").write_text(
            "".join(f'"{user}" "{passwords.get(user, "")}"\n' for user in {*users, "postgres"})
        )
        (self.directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{self.database} = host={host} port={upstream.port or 5432} dbname={self.database}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            # The server trusts the tests' connections (a test database);
            # PgBouncer logs in to it as each client's own role.
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'users.txt'}\n"
            "pool_mode = transaction\n"
            # Few server connections per (role, database): clients share them,
            # which is the point.
            f"default_pool_size = {pool_size}\n"
            "min_pool_size = 0\n"
            "reserve_pool_size = 0\n"
            "max_client_conn = 500\n"
            "admin_users = postgres\n"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
            f"pidfile = {self.directory / 'pgbouncer.pid'}\n"
        )

    def url(self, database_url: str) -> str:
        return (
            make_url(database_url).set(host="127.0.0.1", port=self.port, query={}).render_as_string(hide_password=False)
        )

    def start(self, timeout: float = 15) -> PgBouncer:
        command = [BINARY, str(self.directory / "pgbouncer.ini")]
        if os.geteuid() == 0:
            owner = pwd.getpwnam(self.run_as)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            for path in self.directory.iterdir():
                os.chown(path, owner.pw_uid, owner.pw_gid)
            command[1:1] = ["-u", self.run_as]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited early:\n{self.output()}")
            try:
                self.admin("SHOW VERSION")
                return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not start in {timeout}s:\n{self.output()}")

    def admin(self, command: str) -> list[dict]:
        """A command of PgBouncer's admin console (SHOW POOLS, ...), as rows."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname="pgbouncer",
            user="postgres",
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=2,
        ) as conn:
            return conn.execute(command).fetchall()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PgBouncer's immediate shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def output(self) -> str:
        log = self.directory / "pgbouncer.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
