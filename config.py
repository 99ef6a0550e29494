"""Configuration, read from the environment (and `.env` through python-dotenv).

Every setting is parsed when a config object is created, so a bad value stops the
process at start-up with a message that names the variable, instead of surfacing
later as a confusing runtime error. `ProductionConfig` adds the checks that keep
an insecure deployment from starting at all.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import os
import re
import secrets
from collections import Counter
from datetime import timedelta
from pathlib import Path

from dotenv import dotenv_values, load_dotenv
from limits import parse_many

BASE_DIR = Path(__file__).resolve().parent
# The source tree whose text no secret may appear in (not moved by the tests, which
# point BASE_DIR at an empty directory).
REPOSITORY_DIR = BASE_DIR
# Values that were once written in the repository as defaults: a key that has
# been public is public for ever, whatever the files say today.
PUBLISHED_VALUES = frozenset(
    {
        "dev-only-secret-do-not-use-in-production-0123456789",
        "dev-only-jwt-secret-do-not-use-in-production-0123",
        "test-only-secret-0123456789abcdef0123456789",
        "wafaa-demo-password",
    }
)
# What the development config's demo admins use unless SEED_ADMIN_PASSWORD is set.
DEMO_PASSWORD = "wafaa-demo-password"
# The flask-sqlalchemy bind of the schema owner's engine (MIGRATION_DATABASE_URL).
OWNER_BIND = "owner"

# Symmetric algorithms only: the service both signs and verifies its tokens.
JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
MIN_SECRET_LENGTH = 32
MIN_PRODUCTION_BCRYPT_ROUNDS = 12
# An origin is scheme://host[:port], nothing more. Anything else (a path, a regex,
# a wildcard) is refused, because flask-cors treats strings with regex characters
# as patterns and a pattern is how look-alike origins slip through.
_ORIGIN_RE = re.compile(r"^https?://[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message names the variable."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of true/false/1/0/yes/no/on/off, got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = env_str(name)
    if value is None:
        number = default
    else:
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {number}")
    return number


def env_prepare_threshold(name: str) -> int | None:
    """psycopg's prepare_threshold: None (unset or "off") never prepares."""
    value = env_str(name)
    if value is None or value.lower() == "off":
        return None
    return env_int(name, 0, minimum=0)


def env_rate_limit(name: str, default: str) -> str:
    """A flask-limiter limit such as "20/minute;200/hour"; a typo must not turn
    the limit off."""
    value = env_str(name, default)
    try:
        limits = parse_many(value)
    except ValueError:
        limits = []
    if not limits:
        raise ConfigError(f'{name} must be a rate limit such as "20/minute;200/hour", got {value!r}')
    return value


def env_origins(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return list(default)
    try:
        origins = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(f'{name} must be a JSON list such as ["https://app.example.com"]') from None
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise ConfigError(f'{name} must be a JSON list of strings such as ["https://app.example.com"]')
    for origin in origins:
        if origin != "*" and not _ORIGIN_RE.match(origin):
            raise ConfigError(f"{name} entry {origin!r} is not an origin (scheme://host[:port], lower-case)")
    return origins


def env_networks(name: str, default: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A JSON list of networks (CIDR); `[]` allows none."""
    raw = env_str(name)
    try:
        values = json.loads(raw) if raw else default
        if not isinstance(values, list):
            raise ValueError
        return [ipaddress.ip_network(value, strict=False) for value in values]
    except (ValueError, TypeError):
        raise ConfigError(f'{name} must be a JSON list of networks, e.g. ["10.0.0.0/8"]') from None


def env_hosts(name: str) -> list[str] | None:
    value = env_str(name)
    if value is None:
        return None
    try:
        hosts = json.loads(value)
    except json.JSONDecodeError:
        hosts = None
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f'{name} must be a JSON list of host names such as ["api.example.com", ".example.com"]')
    return hosts


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use, at least one: its affinity, and in a
    container its CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`),
    rounded up. The host's core count would start a worker per host core in a
    container allowed two."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup)
    return max(1, min(cpus, quota) if quota else cpus)


def cgroup_cpu_quota(root: Path) -> int | None:
    """CPUs' worth of time the cgroup allows per period, rounded up; None if no limit."""
    try:
        fields = (root / "cpu.max").read_text().split()  # v2: "max 100000" or "150000 100000"
    except OSError:
        try:  # v1
            fields = [(root / "cpu" / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us")]
        except OSError:
            return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except (ValueError, IndexError):  # "max", "-1": no limit
        return None
    return math.ceil(quota / period) if quota > 0 and period > 0 else None


def load_environment_file() -> None:
    """`.env` into the environment (real variables win), for the configurations
    that read it: gunicorn.conf.py calls this before it reads HOST, PORT,
    WEB_CONCURRENCY and the rest, which the app's config would otherwise read
    from `.env` too late for gunicorn."""
    if config_class_from_env().LOAD_DOTENV:
        load_dotenv(BASE_DIR / ".env", override=False)


# gunicorn's threads per worker (gunicorn.conf.py). Many: a thread is made only
# when a request needs one, and logins held in a flood (wafaa.passwords) sleep on
# theirs, so the API still finds free ones. How many requests use the database at
# once is the pool's business (DB_POOL_SIZE), not this.
DEFAULT_THREADS = 256


def default_threads() -> int:
    return env_int("GUNICORN_THREADS", DEFAULT_THREADS, minimum=1)


def default_login_concurrency(hash_slots: int) -> int:
    """Logins in progress per worker: all threads but an eighth (two at least),
    which are the API's whatever the logins do."""
    threads = default_threads()
    return max(hash_slots, threads - max(2, threads // 8))


def default_hash_slots() -> int:
    """A core's worth of bcrypt per core, shared among the worker processes."""
    workers = env_int("WEB_CONCURRENCY", usable_cpus(), minimum=1)
    return max(1, usable_cpus() // workers)


def database_url(url: str, name: str = "DATABASE_URL") -> str:
    """Accept the usual `postgresql://` form and use psycopg 3 for it."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("postgresql+psycopg://"):
        return url
    raise ConfigError(f"{name} must be a PostgreSQL URL (postgresql://user:password@host:port/dbname)")


# Text files of the source tree a secret could have been copied from.
_SOURCE_SUFFIXES = frozenset({".py", ".md", ".sh", ".example", ".ini", ".toml", ".cfg", ".txt", ".json", ".yml"})
_SKIPPED_DIRS = frozenset({"instance", "node_modules", "htmlcov", "__pycache__"})


@functools.cache
def _repository_text() -> str:
    """Every text file of the source tree, once per process (about a megabyte)."""
    chunks = []
    for directory, dirs, files in os.walk(REPOSITORY_DIR):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS]
        for name in files:
            path = Path(directory, name)
            if path.suffix in _SOURCE_SUFFIXES or name in {"Makefile", ".env.example"}:
                chunks.append(path.read_text(errors="ignore"))
    return "\n".join(chunks)


def is_published(value: str) -> bool:
    """Whether `value` is written anywhere in the source tree, or ever was as a
    default: anyone with the code has it."""
    return value in PUBLISHED_VALUES or value in _repository_text()


def weak_secret_problem(value: str) -> str | None:
    """Why `value` is too guessable to sign with, or None. A heuristic: a random key
    (secrets.token_urlsafe(48), or 32 hex digits) passes; one character repeated,
    a short pattern repeated or a few distinct characters do not."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"must be at least {MIN_SECRET_LENGTH} characters long"
    counts = Counter(value)
    bits = -sum(n * math.log2(n / len(value)) for n in counts.values())
    periodic = (value + value).find(value, 1) < len(value)
    if periodic or len(counts) < 8 or bits < 96:
        return "is not random enough (generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    return None


def development_secrets(directory: Path) -> dict[str, str]:
    """Random keys for development, made on first use and kept in
    instance/secrets.json (mode 0600), so tokens outlive a restart and no key of
    any installation is ever in the repository."""
    path = directory / "secrets.json"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        keys = {name: secrets.token_urlsafe(48) for name in ("SECRET_KEY", "JWT_SECRET_KEY")}
        # Written aside and linked into place: two processes starting at once
        # agree on one file, and nobody reads a half-written one.
        temporary = directory / f".secrets.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(keys, file)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} must be readable by its owner only: chmod 600 {path}")
    try:
        keys = json.loads(path.read_text())
        return {name: str(keys[name]) for name in ("SECRET_KEY", "JWT_SECRET_KEY")}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{path} is damaged: delete it and a new one is made (existing tokens stop working)"
        ) from None


def is_loopback(host: str) -> bool:
    """Whether a bind address only takes connections from this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that resolves elsewhere, or 0.0.0.0-style wildcards spelled oddly


class Config:
    """Settings shared by every environment. Instantiate to read the environment."""

    ENV_NAME = "base"
    LOAD_DOTENV = True
    # JSON lines for log pipelines; development prints for a person instead.
    DEFAULT_LOG_FORMAT = "json"
    # The demo admins' password when SEED_ADMIN_PASSWORD is unset: development and
    # tests only; production has none.
    DEFAULT_SEED_PASSWORD: str | None = None
    DEFAULT_BCRYPT_ROUNDS = 12
    DEFAULT_FAILURE_SETTLE_MS = 50
    DATABASE_URL_VARIABLE = "DATABASE_URL"
    MIGRATION_DATABASE_URL_VARIABLE = "MIGRATION_DATABASE_URL"
    DEFAULT_LOGIN_FAILURES_LIMIT = "300/minute"
    # None: from the CPUs and gunicorn's settings (default_hash_slots, threads).
    DEFAULT_HASH_SLOTS: int | None = None
    DEFAULT_ACTIVE_REQUESTS = 2
    DEFAULT_LOGIN_CONCURRENCY: int | None = None
    DEFAULT_RATE_LIMITS = {
        "RATELIMIT_LOGIN_PER_IP": "20/minute;200/hour",
        "RATELIMIT_LOGIN_PER_ACCOUNT": "10/minute;50/hour",
        "RATELIMIT_REFRESH_PER_IP": "60/minute",
        "RATELIMIT_AUTHENTICATED": "600/minute",
    }

    def __init__(self) -> None:
        if self.LOAD_DOTENV:
            # Real environment variables win over the file.
            load_dotenv(BASE_DIR / ".env", override=False)

        self.APP_NAME = env_str("APP_NAME", "Wafaa AI Concierge")
        self.APP_VERSION = env_str("APP_VERSION", "1.0.0")
        self.API_VERSION = "v1"
        self.DEBUG = env_bool("DEBUG", False)
        self.TESTING = False
        self.LOG_LEVEL = (env_str("LOG_LEVEL", "INFO") or "INFO").upper()
        if self.LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {self.LOG_LEVEL!r}")
        self.LOG_FORMAT = (env_str("LOG_FORMAT", self.DEFAULT_LOG_FORMAT) or self.DEFAULT_LOG_FORMAT).lower()
        if self.LOG_FORMAT not in {"json", "console"}:
            raise ConfigError(f"LOG_FORMAT must be json or console, got {self.LOG_FORMAT!r}")

        keys = {name: env_str(name) for name in ("SECRET_KEY", "JWT_SECRET_KEY")}
        if not all(keys.values()):
            keys = {**self.default_secrets(), **{name: value for name, value in keys.items() if value}}
        self.SECRET_KEY = keys.get("SECRET_KEY")
        self.JWT_SECRET_KEY = keys.get("JWT_SECRET_KEY")
        self.JWT_ALGORITHM = env_str("JWT_ALGORITHM", "HS256")
        if self.JWT_ALGORITHM not in JWT_ALGORITHMS:
            raise ConfigError(f"JWT_ALGORITHM must be one of {', '.join(JWT_ALGORITHMS)}, got {self.JWT_ALGORITHM!r}")
        self.JWT_DECODE_ALGORITHMS = [self.JWT_ALGORITHM]
        self.ACCESS_TOKEN_EXPIRE_MINUTES = env_int("ACCESS_TOKEN_EXPIRE_MINUTES", 30, minimum=1, maximum=24 * 60)
        self.REFRESH_TOKEN_EXPIRE_DAYS = env_int("REFRESH_TOKEN_EXPIRE_DAYS", 7, minimum=1, maximum=90)
        self.JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=self.ACCESS_TOKEN_EXPIRE_MINUTES)
        self.JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=self.REFRESH_TOKEN_EXPIRE_DAYS)
        # Tokens are read from the Authorization header only (never the query
        # string, where they would end up in proxy and browser logs); the refresh
        # endpoint also accepts the token in its JSON body.
        self.JWT_TOKEN_LOCATION = ["headers"]
        self.JWT_REFRESH_JSON_KEY = "refresh_token"
        self.JWT_COOKIE_CSRF_PROTECT = False  # no cookies, so no CSRF claim in tokens
        # A replayed refresh token is forgiven for this long after its rotation,
        # so two browser tabs refreshing at once do not log the user out.
        self.REFRESH_REUSE_GRACE_SECONDS = env_int("REFRESH_REUSE_GRACE_SECONDS", 10, minimum=0, maximum=300)
        # However often it is refreshed, a login session ends this long after it
        # began (the refresh lifetime slides; this does not).
        self.SESSION_MAX_DAYS = env_int("SESSION_MAX_DAYS", 30, minimum=1, maximum=365)
        if self.SESSION_MAX_DAYS < self.REFRESH_TOKEN_EXPIRE_DAYS:
            raise ConfigError("SESSION_MAX_DAYS must be at least REFRESH_TOKEN_EXPIRE_DAYS")
        # Revoked sessions are kept this long for investigation, then purged.
        self.SESSION_RETENTION_DAYS = env_int("SESSION_RETENTION_DAYS", 30, minimum=1)

        self.BCRYPT_ROUNDS = env_int("BCRYPT_ROUNDS", self.DEFAULT_BCRYPT_ROUNDS, minimum=4, maximum=16)
        self.SEED_ADMIN_PASSWORD = env_str("SEED_ADMIN_PASSWORD", self.DEFAULT_SEED_PASSWORD)

        raw_url = env_str(self.DATABASE_URL_VARIABLE)
        self.SQLALCHEMY_DATABASE_URI = database_url(raw_url, self.DATABASE_URL_VARIABLE) if raw_url else None
        # The PostgreSQL role every request runs as (SET LOCAL ROLE); created by
        # the migrations. It is neither superuser, nor BYPASSRLS, nor table owner,
        # so row-level security applies to it.
        self.DB_APP_ROLE = env_str("DB_APP_ROLE", "wafaa_app")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.DB_APP_ROLE or ""):
            raise ConfigError("DB_APP_ROLE must be a lower-case PostgreSQL identifier")
        self.DB_POOL_SIZE = env_int("DB_POOL_SIZE", 5, minimum=1)
        self.DB_MAX_OVERFLOW = env_int("DB_MAX_OVERFLOW", 2, minimum=0)
        self.DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 5, minimum=1)
        self.DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 2, minimum=1)
        self.DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 5000, minimum=100)
        # Off by default: psycopg never prepares statements on the server. A
        # named prepared statement outlives the transaction on a pooled
        # connection, so SQL injected into one request could replace one and run
        # inside the next tenant's request (docs/isolation.md); and PgBouncer
        # before 1.21 in transaction mode cannot carry them (another client's
        # server connection has other statements, or none). A number N turns
        # psycopg's preparation on after N runs of a statement: only on direct
        # connections, trading that defence for a little speed.
        self.DB_PREPARE_THRESHOLD = env_prepare_threshold("DB_PREPARE_THRESHOLD")
        self.SQLALCHEMY_ENGINE_OPTIONS = {
            "pool_size": self.DB_POOL_SIZE,
            "max_overflow": self.DB_MAX_OVERFLOW,
            # Shorter than gunicorn's worker timeout: an exhausted pool answers 503
            # instead of the worker being killed mid-request.
            "pool_timeout": self.DB_POOL_TIMEOUT,
            # Connections idle for a while are pinged before reuse instead
            # (wafaa/db_pool.py): one round trip less per request under load.
            "pool_pre_ping": False,
            "pool_recycle": 1800,
            # psycopg runs in autocommit mode and wafaa.tenancy opens every
            # transaction itself, with BEGIN and the tenant settings in a single
            # round trip. The ORM still sees ordinary transactions.
            "isolation_level": "AUTOCOMMIT",
            # Statements and their parameters never appear in error messages, so
            # they cannot reach a log line.
            "hide_parameters": True,
            "connect_args": {
                "connect_timeout": self.DB_CONNECT_TIMEOUT,
                "application_name": "wafaa",
                "prepare_threshold": self.DB_PREPARE_THRESHOLD,
            },
        }
        self.SQLALCHEMY_TRACK_MODIFICATIONS = False
        # The schema owner's credentials: migrations and operators' cross-tenant
        # commands (the system scope) use them; the service never needs them, so a
        # process serving requests is best started without (wafaa.db_roles).
        raw_owner_url = env_str(self.MIGRATION_DATABASE_URL_VARIABLE)
        self.MIGRATION_DATABASE_URL = (
            database_url(raw_owner_url, self.MIGRATION_DATABASE_URL_VARIABLE) if raw_owner_url else None
        )
        self.SQLALCHEMY_BINDS = {}
        if self.MIGRATION_DATABASE_URL:
            self.SQLALCHEMY_BINDS[OWNER_BIND] = {
                **self.SQLALCHEMY_ENGINE_OPTIONS,
                "url": self.MIGRATION_DATABASE_URL,
                "pool_size": 2,
                "max_overflow": 2,
                "connect_args": {
                    "connect_timeout": self.DB_CONNECT_TIMEOUT,
                    "application_name": "wafaa-owner",
                    "prepare_threshold": self.DB_PREPARE_THRESHOLD,
                },
            }

        self.CORS_ORIGINS = env_origins("CORS_ORIGINS", [])
        # Host names the service answers to (Flask checks request.host against
        # them; anything else is a 400). Unset: any host, as no URL the service
        # builds ever uses the Host header (no redirects, relative Location).
        self.TRUSTED_HOSTS = env_hosts("TRUSTED_HOSTS")
        # Unexpected errors to Sentry (wafaa.error_reporting); unset: off.
        self.SENTRY_DSN = env_str("SENTRY_DSN")
        # GET /metrics: who may scrape it (wafaa.metrics).
        self.METRICS_TOKEN = env_str("METRICS_TOKEN")
        self.METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"])
        self.TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=5)
        self.MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1024)

        self.RATELIMIT_STORAGE_URI = env_str("RATELIMIT_STORAGE_URI", "memory://")
        # Per-address keys (rate limits, login throttling) take an IPv6 address's
        # network of this length: one host usually holds a whole /64.
        self.RATELIMIT_IPV6_PREFIX = env_int("RATELIMIT_IPV6_PREFIX", 64, minimum=32, maximum=128)
        self.RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
        for name, default in self.DEFAULT_RATE_LIMITS.items():
            setattr(self, name, env_rate_limit(name, default))
        # Failed logins over the whole service (every account, every address), after
        # which logins are refused with 429 until the window moves on: a flood of
        # guesses from many addresses has a ceiling.
        self.RATELIMIT_LOGIN_FAILURES = env_rate_limit("RATELIMIT_LOGIN_FAILURES", self.DEFAULT_LOGIN_FAILURES_LIMIT)
        # Login throttling, per account and source address (wafaa/sql/login.sql):
        # after LOGIN_LOCKOUT_THRESHOLD failures from one source within the window,
        # that source waits LOGIN_THROTTLE_BASE_SECONDS before its next attempt is
        # even checked, twice as long after each further failure (capped at the
        # window). Other sources, the account's owner among them, are not slowed.
        # The same bounds are enforced by the login function itself, so SQL run
        # as the service's role cannot log in outside them.
        self.LOGIN_LOCKOUT_THRESHOLD = env_int("LOGIN_LOCKOUT_THRESHOLD", 10, minimum=1, maximum=100)
        self.LOGIN_LOCKOUT_WINDOW_MINUTES = env_int("LOGIN_LOCKOUT_WINDOW_MINUTES", 15, minimum=1, maximum=24 * 60)
        self.LOGIN_THROTTLE_BASE_SECONDS = env_int("LOGIN_THROTTLE_BASE_SECONDS", 1, minimum=1, maximum=60)
        # Password hashing (bcrypt) per worker process: this many at once, at a
        # lower CPU priority than the API, the others wait about
        # PASSWORD_HASH_WAIT_MS (+-50 %); at most LOGIN_CONCURRENCY logins (hashing
        # or waiting) at once, so the rest of the API always has threads. A login
        # that cannot start is answered 503 with Retry-After (wafaa.passwords).
        self.PASSWORD_HASH_CONCURRENCY = env_int(
            "PASSWORD_HASH_CONCURRENCY", self.DEFAULT_HASH_SLOTS or default_hash_slots(), minimum=1
        )
        self.LOGIN_CONCURRENCY = env_int(
            "LOGIN_CONCURRENCY",
            self.DEFAULT_LOGIN_CONCURRENCY or default_login_concurrency(self.PASSWORD_HASH_CONCURRENCY),
            minimum=1,
        )
        if self.LOGIN_CONCURRENCY < self.PASSWORD_HASH_CONCURRENCY:
            raise ConfigError("LOGIN_CONCURRENCY must be at least PASSWORD_HASH_CONCURRENCY")
        self.PASSWORD_HASH_WAIT_MS = env_int("PASSWORD_HASH_WAIT_MS", 3000, minimum=0, maximum=20_000)
        # Under a flood of failed logins, password checks take turns across the
        # processes that share this file: gunicorn.conf.py names one per instance
        # (wafaa.passwords.HostSlot). Unset: this process alone.
        self.PASSWORD_HASH_LOCK_FILE = env_str("PASSWORD_HASH_LOCK_FILE")
        # Requests of a worker whose Python runs at once; the rest wait their turn
        # asleep, so that gunicorn's many threads do not fight over the GIL
        # (wafaa.admission, docs/performance.md).
        self.ACTIVE_REQUESTS_PER_WORKER = env_int(
            "ACTIVE_REQUESTS_PER_WORKER", self.DEFAULT_ACTIVE_REQUESTS, minimum=1, maximum=1024
        )
        # Every failed login answers this long after its password check, so that
        # an unknown email (nothing to write) and a known one (an audit row) take
        # the same time.
        self.LOGIN_FAILURE_SETTLE_MS = env_int(
            "LOGIN_FAILURE_SETTLE_MS", self.DEFAULT_FAILURE_SETTLE_MS, minimum=0, maximum=1000
        )

        # Admin creations refused because the email is in use (here or in another
        # tenant) per tenant and hour; then 429. Emails are unique across tenants,
        # so each refusal tells that an address exists somewhere: few are allowed.
        self.ADMIN_EMAIL_CONFLICTS_PER_HOUR = env_int("ADMIN_EMAIL_CONFLICTS_PER_HOUR", 5, minimum=1, maximum=1000)
        # The audit log: rows older than this are removed by `flask audit purge`;
        # a row's details are cut (and marked) beyond this size.
        self.AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 365, minimum=1)
        self.AUDIT_DETAILS_MAX_BYTES = env_int("AUDIT_DETAILS_MAX_BYTES", 4096, minimum=512, maximum=65536)

        # flask-smorest / OpenAPI. Swagger UI's assets are served by the app
        # itself (see wafaa/docs.py), so /docs works with no internet access.
        self.API_TITLE = self.APP_NAME
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "docs"
        self.OPENAPI_SWAGGER_UI_URL = "/docs/assets/"
        self.OPENAPI_SWAGGER_UI_CONFIG = {"validatorUrl": None, "persistAuthorization": False}

        self.JSON_SORT_KEYS = False
        self.PROPAGATE_EXCEPTIONS = False

        self.validate()

    def default_secrets(self) -> dict[str, str]:
        """Keys to sign with when the environment gives none: none by default."""
        return {}

    def validate(self) -> None:
        for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is not set")
            # In every configuration: a key anyone with the code has signs
            # anyone's tokens.
            if is_published(getattr(self, name)):
                raise ConfigError(f"{name} is a value written in the repository: generate a new one")
        if not self.SQLALCHEMY_DATABASE_URI:
            raise ConfigError(f"{self.DATABASE_URL_VARIABLE} is not set")


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    DEFAULT_SEED_PASSWORD = DEMO_PASSWORD
    DEFAULT_LOG_FORMAT = "console"

    def default_secrets(self) -> dict[str, str]:
        return development_secrets(BASE_DIR / "instance")


# One pair of random keys per test process; gunicorn servers started by the tests
# get theirs through the environment (tests/conftest.py).
_TEST_SECRETS = {name: secrets.token_urlsafe(48) for name in ("SECRET_KEY", "JWT_SECRET_KEY")}


class TestConfig(Config):
    __test__ = False  # not a pytest test class, despite the name
    ENV_NAME = "testing"
    # Tests never read a developer's .env: they must behave the same everywhere.
    LOAD_DOTENV = False
    DEFAULT_SEED_PASSWORD = DEMO_PASSWORD
    # Fast hashes keep the suite quick; production refuses anything below 12.
    DEFAULT_BCRYPT_ROUNDS = 4
    DEFAULT_FAILURE_SETTLE_MS = 5
    # The suite never touches the database DATABASE_URL names.
    DATABASE_URL_VARIABLE = "TEST_DATABASE_URL"
    MIGRATION_DATABASE_URL_VARIABLE = "TEST_MIGRATION_DATABASE_URL"
    # The suite logs in hundreds of times from 127.0.0.1; the rate-limit tests set
    # their own, low limits.
    DEFAULT_RATE_LIMITS = dict.fromkeys(Config.DEFAULT_RATE_LIMITS, "100000/minute")
    DEFAULT_LOGIN_FAILURES_LIMIT = "100000/minute"
    # Tests log in from many threads of one process at once (at cost 4); the
    # tests of the login gate set their own, low bounds.
    DEFAULT_HASH_SLOTS = 8
    DEFAULT_LOGIN_CONCURRENCY = 64
    # The suite's concurrency tests (row-lock waits, a saturated pool) need their
    # requests inside the app at once; tests/test_admission.py sets its own.
    DEFAULT_ACTIVE_REQUESTS = 64

    def __init__(self) -> None:
        super().__init__()
        self.TESTING = True

    def default_secrets(self) -> dict[str, str]:
        return dict(_TEST_SECRETS)


class ProductionConfig(Config):
    ENV_NAME = "production"

    def validate(self) -> None:
        super().validate()
        for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
            problem = weak_secret_problem(getattr(self, name))
            if problem:
                raise ConfigError(f"{name} {problem}")
        if self.SEED_ADMIN_PASSWORD:
            from wafaa.passwords import password_problem  # the package imports this module

            problem = password_problem(self.SEED_ADMIN_PASSWORD)
            if problem:
                raise ConfigError(f"SEED_ADMIN_PASSWORD: {problem}")
            if is_published(self.SEED_ADMIN_PASSWORD):
                raise ConfigError("SEED_ADMIN_PASSWORD is a value written in the repository (the demo password?)")
        if self.SECRET_KEY == self.JWT_SECRET_KEY:
            raise ConfigError("JWT_SECRET_KEY must differ from SECRET_KEY")
        if self.DEBUG:
            raise ConfigError("DEBUG must be off in production")
        if "*" in self.CORS_ORIGINS:
            raise ConfigError("CORS_ORIGINS must list explicit origins in production, not '*'")
        if self.BCRYPT_ROUNDS < MIN_PRODUCTION_BCRYPT_ROUNDS:
            raise ConfigError(f"BCRYPT_ROUNDS must be at least {MIN_PRODUCTION_BCRYPT_ROUNDS} in production")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestConfig,
    "production": ProductionConfig,
}


def config_class_from_env() -> type[Config]:
    """APP_ENV (environment, else .env) picks the config; production unless told
    otherwise, so that a forgotten setting fails closed."""
    name = (env_str("APP_ENV") or dotenv_values(BASE_DIR / ".env").get("APP_ENV") or "production").strip().lower()
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"APP_ENV must be one of {', '.join(CONFIGS)}, got {name!r}") from None
