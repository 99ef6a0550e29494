"""Fixtures shared by the whole suite.

The suite runs against a real PostgreSQL: TEST_DATABASE_URL when set (CI points it
at the machine's PostgreSQL 15), otherwise an embedded server (pgserver) under
instance/pgtest. The test database is dropped and re-created at the start of a
run, and its schema is built by the migrations, never by create_all. Each test
leaves the tables empty for the next one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import config
from config import TestConfig
from tests.pgbouncer import PgBouncer
from tests.pgbouncer import installed as pgbouncer_installed
from tests.support import ApiClient, Factory
from wafaa.db_roles import DEFAULT_SERVICE, RoleUrls, bootstrap
from wafaa.extensions import db

ROOT = Path(__file__).resolve().parent.parent
# The suite's lane (Makefile, scripts/lane.sh): unset for the plain one;
# "pgbouncer" runs the API tests with the service connected through a PgBouncer of
# the tests' own; "citus", against a Citus cluster of the tests' own.
LANE = os.environ.get("TEST_LANE", "")
LANE_POOL_SIZE = 2
# pgserver narrates every start and stop at INFO.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def _server_and_database() -> tuple[str, str]:
    """(URL of the maintenance database, name of the test database)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        parsed = make_url(url)
        return parsed.set(database="postgres").render_as_string(hide_password=False), parsed.database
    import pgserver

    data = ROOT / "instance" / "pgtest"
    data.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode="stop")
    return server.get_uri("postgres"), "wafaa_test"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# The Citus lane (make test-citus, README): the same tests against a cluster of the
# suite's own, a coordinator and two workers (tests/citus_cluster.py).
CITUS_LANE = LANE == "citus"


@pytest.fixture(scope="session")
def citus_cluster():
    """The lane's cluster, created and started for the session, stopped after it
    (by its data directories' pids). None outside the Citus lane."""
    if not CITUS_LANE:
        yield None
        return
    from tests.citus_cluster import CitusCluster, citus_installed

    problem = citus_installed()
    if problem:
        pytest.exit(f"the Citus lane needs Citus: {problem}", returncode=2)
    cluster = CitusCluster()
    cluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def superuser_url(citus_cluster) -> str:
    """The test database, created afresh, as the superuser the suite was given:
    for setting up roles and for looking beneath the application (raw_db)."""
    if citus_cluster is not None:
        # On every node, with the extension, the workers added.
        return citus_cluster.create_database("wafaa_test")
    maintenance_url, name = _server_and_database()
    if "test" not in name:
        pytest.exit(f"refusing to recreate database {name!r}: its name must contain 'test'", returncode=2)
    with psycopg.connect(_libpq(maintenance_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(_libpq(maintenance_url)).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(superuser_url: str, request) -> str:
    """The service's URL: its unprivileged login role, as in production. The roles
    are created from the superuser URL (wafaa.db_roles), and the schema owner's URL
    is what migrations and the system scope use."""
    urls = bootstrap(superuser_url)
    if LANE == "pgbouncer":
        # The service through PgBouncer in transaction mode; migrations and the
        # operators' system scope directly, as docs/scaling.md says to run them.
        bouncer = _start_lane_pgbouncer(superuser_url, request)
        urls = RoleUrls(service=bouncer.url(urls.service), owner=urls.owner)
    # TestConfig (and gunicorn or flask started by tests) read the URLs from here.
    os.environ["TEST_DATABASE_URL"] = urls.service
    os.environ["TEST_MIGRATION_DATABASE_URL"] = urls.owner
    os.environ["APP_ENV"] = "testing"
    # This run's random keys (config.TestConfig), for the gunicorn and flask
    # processes the tests start: their workers must verify each other's tokens.
    for name, value in config._TEST_SECRETS.items():
        os.environ.setdefault(name, value)
    return urls.service


def _start_lane_pgbouncer(superuser_url: str, request) -> PgBouncer:
    if not pgbouncer_installed():
        pytest.exit("TEST_LANE=pgbouncer needs PgBouncer (apt-get install pgbouncer)", returncode=2)
    bouncer = PgBouncer(superuser_url, users=[DEFAULT_SERVICE], pool_size=LANE_POOL_SIZE).start()
    request.addfinalizer(bouncer.stop)
    return bouncer


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    from flask_migrate import upgrade

    from wafaa import create_app

    app = create_app(TestConfig)
    with app.app_context():
        upgrade()
        if CITUS_LANE:
            result = app.test_cli_runner().invoke(args=["citus", "distribute"])
            assert result.exit_code == 0, (result.output, result.exception)
    dispose(app)  # the owner's engine too
    return database_url


def dispose(app) -> None:
    """Close an app's pooled connections (else psycopg warns when they are collected)."""
    from wafaa.extensions import db

    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()
    health_engine = app.extensions.get("wafaa_health_engine")
    if health_engine is not None:
        health_engine.dispose()


@pytest.fixture(scope="session")
def app(migrated: str):
    from wafaa import create_app

    app = create_app(TestConfig)
    yield app
    dispose(app)


@pytest.fixture
def make_app(monkeypatch, migrated):
    """Build apps with extra environment settings (limits, timeouts...); their
    connections are closed after the test."""
    from wafaa import create_app

    apps = []

    def make(**env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        apps.append(create_app(TestConfig))
        return apps[-1]

    yield make
    for app in apps:
        dispose(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def raw_db(migrated: str, superuser_url: str):
    """A plain psycopg connection as the superuser, for checking what is really in
    the tables, beneath the application and its roles."""
    with psycopg.connect(_libpq(superuser_url), autocommit=True) as conn:
        yield conn


@pytest.fixture(autouse=True)
def _clean_state(request):
    yield
    if "migrated" not in request.fixturenames:
        return
    request.getfixturevalue("migrated")
    with psycopg.connect(_libpq(request.getfixturevalue("superuser_url")), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(table.name for table in db.metadata.sorted_tables)}")
    if "app" in request.fixturenames:
        app = request.getfixturevalue("app")
        with app.app_context():
            app.extensions["wafaa_limiter"].reset()


@pytest.fixture
def redis_url() -> str:
    """A Redis for the rate-limit tests, emptied first. Skipped without one, except
    in CI, where a missing Redis is a failure."""
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {url} is required in CI: {error}")
        pytest.skip(f"no Redis at {url}")
    finally:
        client.close()
    return url


@pytest.fixture
def factory(app) -> Factory:
    return Factory(app)


@pytest.fixture
def api(client, factory) -> ApiClient:
    return ApiClient(client, factory)


@pytest.fixture
def cli(app, runner):
    """Invoke `flask <args>` in the app, the way the `flask` command does.

    The real `flask` command (FlaskGroup) pushes an app context before running a
    command; FlaskCliRunner.invoke on app.cli does not, so it is pushed here.
    """

    def invoke(*args: str, input: str | None = None):
        with app.app_context():
            return runner.invoke(args=list(args), input=input)

    return invoke
