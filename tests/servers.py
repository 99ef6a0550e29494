"""Running the real app under gunicorn (subprocesses) for tests that need real
concurrency, several workers or several instances.

Each server gets a free port on 127.0.0.1, the test database, APP_ENV=testing, and
whatever environment overrides the test passes. It is stopped by PID (SIGTERM,
then SIGKILL), never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


def wait_until(predicate, what: str, *, timeout: float = 30, interval: float = 0.1) -> None:
    """Until `predicate()` holds; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(interval)


def children(pid: int) -> list[int]:
    """A process's live children (from /proc)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    def __init__(self, *, workers: int = 2, threads: int = 4, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.threads = threads
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)

    def start(self, timeout: float = 20) -> GunicornServer:
        env = {
            **os.environ,
            "APP_ENV": "testing",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            **self.env,
        }
        self.process = subprocess.Popen(
            [str(GUNICORN), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.output()}")
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code in (200, 503):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start in {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def worker_pids(self) -> list[int]:
        """The master's live children, its workers."""
        return children(self.process.pid)

    def wait_for_workers_replacing(self, old: list[int], timeout: float = 30) -> None:
        """Until none of `old` is among the workers and all of them are running again."""
        wait_until(
            lambda: not set(self.worker_pids()) & set(old) and len(self.worker_pids()) >= self.workers,
            f"workers {old} were not replaced",
            timeout=timeout,
        )

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc_type is not None:
            # Shown by pytest with the failure: what the server logged.
            print(f"--- gunicorn output ({self.url}) ---\n{self.output()}")
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
