"""A Citus cluster of the tests' own: a coordinator and two workers on 127.0.0.1.

Each node is its own `initdb` of the machine's PostgreSQL (the one Citus is built
into, ../shared/citus/install.sh), with `shared_preload_libraries = 'citus'`, on a
port of its own (never 5432). As root, PostgreSQL refuses to run, so the nodes run
as the `postgres` system user. Every node is started and stopped by this module
through `pg_ctl` and its data directory (its postmaster.pid), never by name.

    python -m tests.citus_cluster start [--root DIR]   # creates, starts, prints the coordinator's URL
    python -m tests.citus_cluster stop [--root DIR]

The ports are WAFAA_CITUS_PORTS (three, comma-separated; default 29501,29502,29503:
below Linux's range of ephemeral ports, 32768-60999, from which every outgoing
connection takes its local port; a node's port inside it was taken, now and then,
by one of the suite's own client connections, and the node could not start).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

PG_BIN = Path(os.environ.get("WAFAA_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEFAULT_ROOT = Path(os.environ.get("WAFAA_CITUS_ROOT", "/tmp/wafaa-citus"))
DEFAULT_PORTS = os.environ.get("WAFAA_CITUS_PORTS", "29501,29502,29503")
SYSTEM_USER = "postgres"
HOST = "127.0.0.1"


def citus_installed() -> str | None:
    """None when Citus is installed into PG_BIN's PostgreSQL, else why not."""
    pg_config = PG_BIN / "pg_config"
    if not pg_config.exists():
        return f"no PostgreSQL at {PG_BIN}"
    libdir = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True).stdout
    if not (Path(libdir.strip()) / "citus.so").exists():
        return f"citus.so is not in {libdir.strip()} (install it with ../shared/citus/install.sh, as root)"
    return None


@dataclass(frozen=True)
class Node:
    name: str
    port: int
    data: Path
    log: Path

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@{HOST}:{self.port}/{database}"


class CitusCluster:
    def __init__(self, root: Path = DEFAULT_ROOT, ports: str = DEFAULT_PORTS) -> None:
        self.root = root
        numbers = [int(port) for port in ports.split(",")]
        if len(numbers) != 3 or 5432 in numbers:
            raise ValueError("three ports, none of them 5432")
        self.nodes = [
            Node(name, port, root / name, root / f"{name}.log")
            for name, port in zip(("coordinator", "worker1", "worker2"), numbers, strict=True)
        ]
        self.user = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def coordinator(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True)

    def _initdb(self, node: Node) -> None:
        self._run("initdb", "--auth=trust", "--encoding=utf8", "--no-sync", "-U", "postgres", "-D", str(node.data))
        with (node.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# wafaa's Citus test cluster\n"
                "shared_preload_libraries = 'citus'\n"
                f"listen_addresses = '{HOST}'\n"
                f"port = {node.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 200\n"
                "max_prepared_transactions = 200\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                # Workers of the test are started and stopped under the service:
                # fail fast rather than wait on a stopped node.
                "citus.node_connection_timeout = 3000\n"
            )

    def create(self) -> None:
        """Fresh data directories for every node (the old ones stopped and removed)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            for parent in self.root.parents:
                parent.chmod(parent.stat().st_mode | 0o011)
        for node in self.nodes:
            self._initdb(node)

    def start_node(self, node: Node) -> None:
        self._run("pg_ctl", "-w", "-t", "60", "-D", str(node.data), "-l", str(node.log), "start")

    def stop_node(self, node: Node) -> None:
        if (node.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-w", "-t", "60", "-m", "fast", "-D", str(node.data), "stop")

    def start(self) -> None:
        for node in self.nodes:
            if not (node.data / "postmaster.pid").exists():
                self.start_node(node)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            self.stop_node(node)

    def create_database(self, database: str) -> str:
        """The database afresh on every node, with the extension, the workers added.
        Returns the coordinator's superuser URL of it."""
        for node in self.nodes:
            with psycopg.connect(node.url(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            with psycopg.connect(node.url(database), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION citus")
        with psycopg.connect(self.coordinator.url(database), autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, self.coordinator.port))
            for worker in self.workers:
                conn.execute("SELECT citus_add_node(%s, %s)", (HOST, worker.port))
        return self.coordinator.url(database)

    def wait_ready(self, node: Node, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(node.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--database", default="wafaa")
    args = parser.parse_args(argv)
    cluster = CitusCluster(args.root)
    if args.command == "stop":
        cluster.stop()
        return 0
    problem = citus_installed()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    cluster.create()
    cluster.start()
    print(cluster.create_database(args.database))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
