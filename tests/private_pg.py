"""A PostgreSQL server of the test's own, to stop and start at will.

Fault tests must never stop the shared server on port 5432 (nor the embedded one
other tests use), so they run this one: PostgreSQL's own binaries from the
pgserver package, a fresh data directory, listening on a free port of 127.0.0.1.
As root, PostgreSQL refuses to run, so it runs as pgserver's system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

from tests.servers import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
    import pgserver as pg  # its public namespace: initdb, pg_ctl (the binaries it ships)

SYSTEM_USER = "pgserver"


def _system_user() -> pwd.struct_passwd:
    """The unprivileged user PostgreSQL runs as when the tests run as root (it
    refuses root), created once."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", SYSTEM_USER], check=True)
        return pwd.getpwnam(SYSTEM_USER)


def _traversable(path: Path) -> None:
    """Let other users traverse every directory above `path` (mkdtemp's parents
    are usually so already; the chmod is a no-op then)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXGRP | stat.S_IXOTH
        if wanted != mode:
            parent.chmod(wanted)


class PrivatePostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wafaa-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.user = SYSTEM_USER if os.geteuid() == 0 else None
        if self.user:
            entry = _system_user()
            _traversable(self.root)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        pg.initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.data, **self._as_user())

    def _as_user(self) -> dict:
        return {"user": self.user} if self.user else {}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        pg.pg_ctl(["-w", "-t", "30", "-o", options, "-l", str(self.log), "start"], pgdata=self.data, **self._as_user())

    def stop(self) -> None:
        pg.pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=self.data, **self._as_user())

    def destroy(self) -> None:
        try:
            self.stop()
        except Exception:  # already stopped
            pass
        shutil.rmtree(self.root, ignore_errors=True)
