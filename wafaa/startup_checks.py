"""Checks made before serving, by gunicorn's master (gunicorn.conf.py) and by
`make run` before it seeds: a deployment that would be unsafe refuses to start
with one line saying why and what to do.

Run as `python -m wafaa.startup_checks HOST` to check serving on HOST with the
configuration of the environment (APP_ENV, .env) and WEB_CONCURRENCY workers.
"""

from __future__ import annotations

import os
import sys

from config import DEMO_PASSWORD, Config, ConfigError, config_class_from_env, is_loopback, usable_cpus


def bind_host(bind: str) -> str:
    """The host of a gunicorn bind address ("127.0.0.1:8000", "[::1]:8000",
    "unix:/run/wafaa.sock"); a Unix socket is as local as loopback."""
    if bind.startswith("unix:") or bind.startswith("fd://"):
        return "localhost"
    host, _, _ = bind.rpartition(":")
    return host or bind


def serving_problems(config: Config, binds: list[str], workers: int) -> list[str]:
    """What makes serving `config` on `binds` with `workers` processes unsafe."""
    found = []
    exposed = [b for b in binds if not is_loopback(bind_host(b))]
    if config.ENV_NAME == "development" and exposed and config.SEED_ADMIN_PASSWORD == DEMO_PASSWORD:
        found.append(
            f"serving on {', '.join(exposed)} in development with the demo admins' published password:"
            " set SEED_ADMIN_PASSWORD (before the first `flask seed`), or serve on 127.0.0.1"
        )
    if config.ENV_NAME == "production" and workers > 1 and config.RATELIMIT_STORAGE_URI.startswith("memory://"):
        found.append(
            f"RATELIMIT_STORAGE_URI is memory:// with {workers} workers: each would count on its own, multiplying"
            " every rate limit; set RATELIMIT_STORAGE_URI=redis://... (or WEB_CONCURRENCY=1)"
        )
    return found


def serving_warnings(config: Config, workers: int) -> list[str]:
    if config.ENV_NAME != "production" and workers > 1 and config.RATELIMIT_STORAGE_URI.startswith("memory://"):
        return [
            f"RATELIMIT_STORAGE_URI is memory:// with {workers} workers: each counts on its own, so every rate"
            f" limit is {workers} times what it says; production refuses this (use redis://)"
        ]
    return []


def main(argv: list[str]) -> int:
    host = argv[1] if len(argv) > 1 else os.environ.get("HOST", "127.0.0.1")
    try:
        config = config_class_from_env()()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 1
    workers = int(os.environ.get("WEB_CONCURRENCY") or usable_cpus())
    problems = serving_problems(config, [f"{host}:0"], workers)
    for problem in problems:
        print(f"refusing to start: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
