"""gunicorn settings for the Wafaa backend: `gunicorn -c gunicorn.conf.py wsgi:app`.

Tuned on the 2-core reference machine with `make bench` (see docs/performance.md).
Every value can be overridden with the environment variable named beside it.
"""

import json
import os
import signal
import sys

from gunicorn.glogging import Logger

from wafaa.logging import JsonFormatter


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"

# One process per core: the work is CPU-bound Python (and bcrypt, which releases
# the GIL). Threads inside each worker overlap the waits on PostgreSQL and let a
# worker use a second core during bcrypt. Keep DB_POOL_SIZE >= threads.
workers = _int("WEB_CONCURRENCY", os.cpu_count() or 2)
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)

# A request that takes 30 s is stuck: the worker is replaced. The database pool
# gives up sooner (DB_POOL_TIMEOUT), so a saturated pool answers 503, not a kill.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM (deploys), requests in flight get this long to finish.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Behind a load balancer that reuses connections, keep them open a little longer
# than nothing, but shorter than the balancer's own idle timeout.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then, with jitter so they do not all restart at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 100_000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 10_000)


# The app writes one JSON access line per request itself (with request, tenant and
# user ids), so gunicorn's own access log is off, and its error log is JSON too.
class JsonLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def _compute_access_log_enabled(self) -> bool:
        # gunicorn asks this once, at setup: never build its access line at all.
        return False


logger_class = JsonLogger
accesslog = None
errorlog = "-"


def on_starting(server) -> None:
    # Production never serves as a superuser, a BYPASSRLS role or an owner of the
    # schema: row-level security would not bind it. One line, and no start.
    from config import ProductionConfig, config_class_from_env
    from wafaa.db_roles import startup_problem

    config_class = config_class_from_env()
    if config_class is ProductionConfig:
        problem = startup_problem(config_class().SQLALCHEMY_DATABASE_URI)
        if problem:
            sys.stderr.write(f"refusing to start: {problem}\n")
            sys.exit(1)


def post_worker_init(worker) -> None:
    # Ctrl-C in a terminal signals the whole process group: the master, which then
    # sends its workers SIGQUIT, and the workers themselves, and gunicorn's gthread
    # worker deadlocks when both arrive (each runs tpool.shutdown under the same
    # lock), leaving the master to kill it after graceful_timeout. Workers leave
    # SIGINT to the master.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from wsgi import app

    if app.config["ENV_NAME"] == "production" and worker.cfg.workers > 1:
        if app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
            worker.log.warning(
                "RATELIMIT_STORAGE_URI is memory:// with %s workers: each worker counts on its own, "
                "so every rate limit is multiplied by the number of workers. Use redis://.",
                worker.cfg.workers,
            )


def when_ready(server) -> None:
    server.log.info(json.dumps({"event": "ready", "workers": workers, "threads": threads}))
