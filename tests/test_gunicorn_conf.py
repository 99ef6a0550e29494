"""gunicorn.conf.py does what it says: `.env` reaches gunicorn's settings, the
worker count follows the CPUs this process may use, idle connections outlive a
load balancer's, and .env.example lists every variable the code reads."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from config import Config, TestConfig, cgroup_cpu_quota
from tests.servers import GunicornServer, children, wait_until

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


def _printed_config(directory: Path, env: dict[str, str]) -> dict[str, str]:
    """gunicorn's own resolved settings (`--print-config`), as it would serve."""
    run = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "--print-config", "wsgi:app"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return dict(re.findall(r"^(\w+)\s+= (.*)$", run.stdout, re.MULTILINE))


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the tracked files, so that a `.env` written for a test never
    touches the working tree."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def _clean_env() -> dict[str, str]:
    """This environment without any variable of the service's; gunicorn loads
    the app to check it, which needs a database URL (nothing connects: port 9 of
    127.0.0.1 is closed)."""
    names = re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if k not in names and k != "APP_ENV" and not k.startswith("TEST_")}
    return {**env, "DATABASE_URL": "postgresql://wafaa@127.0.0.1:9/wafaa"}


def test_dot_env_reaches_gunicorns_settings(checkout):
    (checkout / ".env").write_text(
        "APP_ENV=development\nHOST=127.0.0.1\nPORT=9123\nWEB_CONCURRENCY=3\nGUNICORN_THREADS=7\nGUNICORN_KEEPALIVE=90\n"
    )
    settings = _printed_config(checkout, _clean_env())
    assert settings["bind"] == "['127.0.0.1:9123']"
    assert settings["workers"] == "3"
    assert settings["threads"] == "7"
    assert settings["keepalive"] == "90"
    # The real environment wins over the file.
    settings = _printed_config(checkout, {**_clean_env(), "PORT": "9124"})
    assert settings["bind"] == "['127.0.0.1:9124']"


def test_defaults_outlive_a_balancers_idle_timeout_and_count_usable_cpus(checkout):
    settings = _printed_config(checkout, {**_clean_env(), "APP_ENV": "development"})
    assert int(settings["keepalive"]) > 60  # AWS ALB's and nginx's idle timeout
    assert settings["workers"] == str(len(os.sched_getaffinity(0)))  # no quota on this machine's test run
    assert settings["worker_tmp_dir"] == ("/dev/shm" if os.path.isdir("/dev/shm") else "None")
    assert settings["bind"] == "['127.0.0.1:8000']"


def test_env_example_copied_to_dot_env_serves_with_the_defaults(checkout):
    (checkout / ".env").write_text((ROOT / ".env.example").read_text())  # APP_ENV=development
    settings = _printed_config(checkout, _clean_env())
    assert settings["workers"] == str(len(os.sched_getaffinity(0)))  # WEB_CONCURRENCY= (empty)
    assert settings["bind"] == "['127.0.0.1:8000']"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
        ({}, None),
    ],
)
def test_a_containers_cpu_quota_is_read_from_its_cgroup(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == expected


def test_env_example_lists_every_variable_the_code_reads():
    literal = re.compile(r"""(?:env_[a-z_]+|_int|os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
    read = set()
    for path in [ROOT / "config.py", ROOT / "gunicorn.conf.py", *(ROOT / "wafaa").rglob("*.py")]:
        read |= set(literal.findall(path.read_text()))
    # Read through names held in code rather than written at the call.
    read |= set(Config.DEFAULT_RATE_LIMITS) | {"SECRET_KEY", "JWT_SECRET_KEY"}
    read |= {Config.DATABASE_URL_VARIABLE, Config.MIGRATION_DATABASE_URL_VARIABLE}
    # The test configuration's own, documented in the README's test section.
    read -= {TestConfig.DATABASE_URL_VARIABLE, TestConfig.MIGRATION_DATABASE_URL_VARIABLE}
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read - documented == set(), "read by the code, missing from .env.example"
    assert documented - read == set(), "in .env.example, read by nothing"


@pytest.mark.gunicorn
def test_what_the_master_made_is_removed_at_exit_even_after_a_reload(migrated):
    """A HUP runs gunicorn.conf.py again: what the master made at start (the
    metrics directory) is still its own to remove when it stops."""
    server = GunicornServer(workers=2, threads=4)
    with server:
        first = server.worker_pids()
        # The metrics directory, where the workers' counters are mapped files.
        mapped = {line.split()[-1] for pid in first for line in Path(f"/proc/{pid}/maps").read_text().splitlines()}
        metrics_dir = Path(next(path for path in mapped if "/wafaa-metrics-" in path)).parent
        assert metrics_dir.is_dir()
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_workers_replacing(first)
    assert not metrics_dir.exists()


def _ready_lines(server: GunicornServer) -> list[dict]:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "ready"]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


@contextmanager
def _upgraded(server: GunicornServer) -> Iterator[int]:
    """A USR2 upgrade of `server` (gunicorn starts a new master beside the old
    one, on the same sockets): the new master's pid, stopped in the end if the
    test left it running."""
    old_workers = server.worker_pids()
    server.process.send_signal(signal.SIGUSR2)
    wait_until(lambda: len(_ready_lines(server)) == 2, "the new master did not get ready")
    new_master = next(pid for pid in server.worker_pids() if pid not in old_workers)
    try:
        wait_until(lambda: children(new_master), "the new master started no worker")
        yield new_master
    finally:
        if _running(new_master):
            os.kill(new_master, signal.SIGTERM)
            try:
                wait_until(lambda: not _running(new_master), "the new master did not stop", timeout=15)
            finally:
                if _running(new_master):
                    os.kill(new_master, signal.SIGKILL)


@pytest.mark.gunicorn
def test_a_usr2_upgrades_old_and_new_workers_share_one_hashing_lock(migrated):
    """On a USR2 upgrade the new master serves the same sockets beside the old one
    until the old one stops: both sets of workers must take turns on one lock file
    (one password check at a time on the host under a flood), and the file goes
    only when the last of the two masters stops."""
    server = GunicornServer(workers=1, threads=4)
    with server, _upgraded(server) as new_master:
        old, new = (line["login_flood_lock_file"] for line in _ready_lines(server))
        assert old == new and Path(old).exists()
        # The old master stops (the upgrade done): the new one keeps the file.
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        assert _running(new_master) and Path(new).exists()
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
        os.kill(new_master, signal.SIGTERM)
        wait_until(lambda: not _running(new_master), "the new master did not stop")
        assert not Path(new).exists()


@pytest.mark.gunicorn
def test_a_new_master_abandoned_mid_upgrade_leaves_the_old_ones_lock(migrated):
    """An upgrade rolled back (the new master stopped, the old one kept) must not
    take the lock file from under the old master's workers."""
    server = GunicornServer(workers=1, threads=4)
    with server:
        with _upgraded(server) as new_master:
            lock_file = Path(_ready_lines(server)[0]["login_flood_lock_file"])
            os.kill(new_master, signal.SIGTERM)
            wait_until(lambda: new_master not in server.worker_pids(), "the new master did not stop")
        assert lock_file.exists()
    assert not lock_file.exists()
