"""gunicorn settings for the Wafaa backend: `gunicorn -c gunicorn.conf.py wsgi:app`.

Tuned on the 2-core reference machine with `make bench` (see docs/performance.md).
Every value can be overridden with the environment variable named beside it.
"""

import gc
import hashlib
import os
import shutil
import signal
import sys
import tempfile

from gunicorn.glogging import Logger

from config import config_class_from_env, default_threads, load_environment_file, usable_cpus
from wafaa.balanced_worker import Balance, ConnectionBoard
from wafaa.cpu_affinity import allowed_cpus, choose_cpu, pin_process, should_pin
from wafaa.logging import FORMATTERS

# `.env` first: everything below reads the environment.
load_environment_file()

# A RAM disk, where there is one: for the workers' heartbeats and the metrics files.
_RAM_DISK = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()  # empty, as in .env.example: the default
    return int(value) if value else default


bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"

# gunicorn's control socket defaults to one path per user, so that several
# instances on one host would share (and fight over) it. Off, unless a path of
# this instance's own is given.
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET")
control_socket_disable = not _control_socket
if _control_socket:
    control_socket = _control_socket

# One process per core: the work is CPU-bound Python (and bcrypt, which releases
# the GIL). Threads inside each worker overlap the waits on PostgreSQL and let a
# worker use a second core during bcrypt. The CPUs are those this process may use
# (its affinity, a container's quota), not the host's.
workers = _int("WEB_CONCURRENCY", usable_cpus())
worker_class = "wafaa.balanced_worker.BalancedThreadWorker"  # gthread, connections shared evenly
threads = default_threads()  # 256 unless GUNICORN_THREADS says otherwise (config.py: why)

# A request that takes 30 s is stuck: the worker is replaced. The database pool
# gives up sooner (DB_POOL_TIMEOUT), so a saturated pool answers 503, not a kill.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM (deploys), requests in flight get this long to finish.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Idle connections stay open longer than a load balancer's own idle timeout (AWS
# ALB: 60 s; nginx upstream keepalive_timeout: 60 s): the balancer must be the one
# to close them. If the app closed first, a request the balancer sent on the
# closing connection would fail as a 502. An idle connection waits in the poller,
# not on a thread.
keepalive = _int("GUNICORN_KEEPALIVE", 75)
# Workers' heartbeat files on a RAM disk: on a slow or full disk, the heartbeat
# writes would block workers and get them killed.
worker_tmp_dir = _RAM_DISK
# Backstops: the app refuses a longer URL or larger headers itself, in its error
# format (wafaa.http_guards: 4094, 8190 bytes, 100 fields); gunicorn's own bare
# answers only come far above.
limit_request_line = 8190
limit_request_field_size = 16380
limit_request_fields = 200
# Recycle workers now and then, with jitter so they do not all restart at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 100_000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 10_000)


def _formatter():
    """gunicorn's own lines in the app's format (LOG_FORMAT, else the
    configuration's default: JSON, or console lines in development)."""
    name = (os.environ.get("LOG_FORMAT") or config_class_from_env().DEFAULT_LOG_FORMAT).lower()
    return FORMATTERS.get(name, FORMATTERS["json"])()


# The app writes one JSON access line per request itself (with request, tenant and
# user ids), so gunicorn's own access log is off, and its error log is JSON too.
class JsonLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(_formatter())

    def _compute_access_log_enabled(self) -> bool:
        # gunicorn asks this once, at setup: never build its access line at all.
        return False


logger_class = JsonLogger
accesslog = None
errorlog = "-"


def on_starting(server) -> None:
    # Unsafe deployments do not start: one line each, and exit 1. Production never
    # serves as a superuser, a BYPASSRLS role or an owner of the schema (row-level
    # security would not bind it), nor counts rate limits per worker; development
    # never exposes the demo password beyond this machine (wafaa.startup_checks).
    from config import ConfigError, ProductionConfig, config_class_from_env
    from wafaa.db_roles import startup_problem
    from wafaa.startup_checks import serving_problems, serving_warnings

    try:
        config_class = config_class_from_env()
        config = config_class()
    except ConfigError as error:
        sys.stderr.write(f"refusing to start: configuration: {error}\n")
        sys.exit(1)
    problems = serving_problems(config, list(server.cfg.bind), server.cfg.workers)
    try:
        _pinning(server)
    except ValueError as error:
        problems.append(str(error))
    if config_class is ProductionConfig:
        problems += [p for p in [startup_problem(config.SQLALCHEMY_DATABASE_URI)] if p]
    for problem in problems:
        sys.stderr.write(f"refusing to start: {problem}\n")
    if problems:
        sys.exit(1)
    for warning in serving_warnings(config, server.cfg.workers):
        server.log.warning(warning)
    # What this master made, kept on the arbiter: a HUP runs this file again,
    # and module globals would start over (on_exit would then keep them).
    server.wafaa_made = {"metrics_dir": _make_metrics_dir(), "hashing_lock": _name_hashing_lock(server)}


def _name_hashing_lock(server) -> bool:
    """The file whose flock the workers share for the host's one password check
    under a login flood (wafaa.passwords.HostSlot): this instance's own, on a RAM
    disk where there is one; or the operator's PASSWORD_HASH_LOCK_FILE (several
    instances on one host may share one). True when this instance named it.

    Named by the addresses the instance listens on, not by its master: a USR2
    upgrade's new master serves the same sockets beside the old one until the old
    one stops, and both masters' workers must take turns on the same file. (Named
    by the master's pid, the two sets of workers hashed at once for those seconds.)
    A file left by a killed master is harmless: an flock dies with its holder.
    """
    if os.environ.get("PASSWORD_HASH_LOCK_FILE"):
        return False
    instance = hashlib.sha256("\n".join(sorted(server.cfg.bind)).encode()).hexdigest()[:16]
    path = os.path.join(_RAM_DISK or tempfile.gettempdir(), f"wafaa-hashing-{os.getuid()}-{instance}.lock")
    # A name others can guess, in a directory anyone may write: not through a link.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    os.environ["PASSWORD_HASH_LOCK_FILE"] = path
    return True


def _make_metrics_dir() -> bool:
    """Before any worker imports prometheus_client: its counters then write to
    files, one per worker, in this directory, and /metrics adds them up
    (wafaa.metrics). A fresh directory per start, on a RAM disk where there is
    one, removed at exit; or the operator's own PROMETHEUS_MULTIPROC_DIR. True
    when this instance made it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return False
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="wafaa-metrics-", dir=_RAM_DISK)
    return True


def _pinning(server) -> bool:
    # The worker count as gunicorn resolved it (a command line's -w included).
    return should_pin(os.environ.get("GUNICORN_PIN_WORKERS", ""), allowed_cpus(), usable_cpus(), server.cfg.workers)


def pre_fork(server, worker) -> None:
    # In the master, which knows the live workers: one per CPU (wafaa.cpu_affinity).
    if _pinning(server):
        taken = [other.wafaa_cpu for other in server.WORKERS.values() if hasattr(other, "wafaa_cpu")]
        worker.wafaa_cpu = choose_cpu(allowed_cpus(), taken)
    # The workers' connection counts (wafaa.balanced_worker): made before the first
    # fork, on the arbiter so that workers started after a HUP share them, with room
    # for a few workers more than configured (TTIN adds them). With reuse_port each
    # worker listens on a socket of its own, and no sibling could take a connection
    # left to it: no balance then.
    if not hasattr(server, "wafaa_board"):
        server.wafaa_board = ConnectionBoard(max(8, 2 * server.cfg.workers))
    held = [getattr(other, "wafaa_slot", None) for other in server.WORKERS.values()]
    worker.wafaa_slot = None if server.cfg.reuse_port else server.wafaa_board.claim(held)


def post_fork(server, worker) -> None:
    if hasattr(worker, "wafaa_cpu"):
        pin_process(worker.wafaa_cpu)
    if worker.wafaa_slot is not None:
        worker.balance = Balance(server.wafaa_board, worker.wafaa_slot)


def post_worker_init(worker) -> None:
    # Ctrl-C in a terminal signals the whole process group: the master, which then
    # sends its workers SIGQUIT, and the workers themselves, and gunicorn's gthread
    # worker deadlocks when both arrive (each runs tpool.shutdown under the same
    # lock), leaving the master to kill it after graceful_timeout. Workers leave
    # SIGINT to the master.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The app is loaded: its objects (modules, the SQLAlchemy metadata, the
    # OpenAPI spec) live as long as the worker, so the collector need not walk
    # them. Without this, each full collection paused every thread for 60-80 ms
    # (measured with gc.callbacks under `make bench`'s flood); with it, ~3 ms.
    gc.freeze()


def when_ready(server) -> None:
    # A dict: the JSON formatter makes its keys fields of the line. (The lock
    # file's field is not named after the setting: log fields named like a
    # password are masked.)
    server.log.info(
        {
            "event": "ready",
            "workers": workers,
            "threads": threads,
            "login_flood_lock_file": os.environ.get("PASSWORD_HASH_LOCK_FILE"),
        }
    )


def child_exit(server, worker) -> None:
    # A worker that is gone: its live gauges (connections in use) stop counting.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if getattr(worker, "wafaa_slot", None) is not None:
        server.wafaa_board.release(worker.wafaa_slot)


def on_exit(server) -> None:
    made = getattr(server, "wafaa_made", {})
    if made.get("metrics_dir"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    # During a USR2 upgrade the old master and the new one share the lock file:
    # the one that stops last removes it.
    if made.get("hashing_lock") and not _other_master_runs(server):
        try:
            os.unlink(os.environ["PASSWORD_HASH_LOCK_FILE"])
        except FileNotFoundError:
            pass


def _other_master_runs(server) -> bool:
    """This master's USR2 partner, if it still runs: the old master it was started
    from, or the new one it started. (gunicorn's own records lag: a new master
    learns that its parent is gone only on its next loop turn.)"""
    if server.master_pid and os.getppid() == server.master_pid:
        return True
    if server.reexec_pid:
        try:
            return os.waitpid(server.reexec_pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            return False
    return False
