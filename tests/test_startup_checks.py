"""Deployments that would be unsafe do not start (issue 9): production with
per-worker rate-limit counters, development exposed beyond this machine with the
published demo password; and gunicorn's control socket is per instance or off."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.servers import GUNICORN, ROOT, GunicornServer, free_port

pytestmark = pytest.mark.gunicorn


def _keys() -> dict[str, str]:
    return {"SECRET_KEY": secrets.token_urlsafe(48), "JWT_SECRET_KEY": secrets.token_urlsafe(48)}


def _production_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "MIGRATION_"))}
    return {
        **env,
        **_keys(),
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        **extra,
    }


def test_production_refuses_memory_storage_with_several_workers(migrated):
    env = _production_env(migrated, WEB_CONCURRENCY="2", RATELIMIT_STORAGE_URI="memory://")
    result = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    refusals = [line for line in result.stderr.splitlines() if line.startswith("refusing to start:")]
    assert len(refusals) == 1 and "RATELIMIT_STORAGE_URI is memory:// with 2 workers" in refusals[0]
    assert "Traceback" not in result.stderr


def test_production_serves_with_several_workers_sharing_redis(migrated, redis_url):
    env = _production_env(migrated, WEB_CONCURRENCY="2", RATELIMIT_STORAGE_URI=redis_url)
    process = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{env['PORT']}/api/v1/system/info"
        for _ in range(200):
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, "gunicorn exited"
            subprocess.run(["sleep", "0.1"], check=True)
        else:
            pytest.fail("gunicorn did not serve")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _check(host: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SEED_ADMIN_PASSWORD", "WEB_CONCURRENCY")}
    return subprocess.run(
        [sys.executable, "-m", "wafaa.startup_checks", host],
        cwd=ROOT,
        env={**base, **_keys(), "APP_ENV": "development", "DATABASE_URL": "postgresql://u@127.0.0.1/x", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_development_on_a_public_address_needs_a_password_of_its_own():
    exposed = _check("0.0.0.0")
    assert exposed.returncode == 1
    assert "SEED_ADMIN_PASSWORD" in exposed.stderr and "Traceback" not in exposed.stderr
    assert _check("0.0.0.0", SEED_ADMIN_PASSWORD=secrets.token_urlsafe(16)).returncode == 0
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert _check(host).returncode == 0, host


def test_the_development_check_also_stops_gunicorn(migrated, tmp_path):
    # gunicorn refuses in its master, before binding anything.
    env = {**_production_env(migrated), "APP_ENV": "development", "HOST": "0.0.0.0"}
    env.pop("SEED_ADMIN_PASSWORD", None)
    result = subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "refusing to start: serving on 0.0.0.0" in result.stderr


def test_the_control_socket_is_off_unless_this_instance_names_one(migrated, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    default = home / ".gunicorn" / "gunicorn.ctl"
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
    with GunicornServer(workers=1, threads=2, env=env), GunicornServer(workers=1, threads=2, env=env):
        assert not default.exists()  # two instances, no shared socket
    own = tmp_path / "wafaa-a.ctl"
    with GunicornServer(workers=1, threads=2, env={**env, "GUNICORN_CONTROL_SOCKET": str(own)}):
        assert Path(own).is_socket()
    assert not default.exists()
