"""The three kinds of database role, set up from a superuser, and the check that the
service runs as the right one.

* The **schema owner** (`MIGRATION_DATABASE_URL`, `wafaa_owner` when the tooling
  creates it) owns the tables and functions: it runs `flask db upgrade` and the
  operators' cross-tenant commands (`flask seed`, `flask tenants ...`).
* The **service's login role** (`DATABASE_URL`, `wafaa_service`): LOGIN, not
  superuser, no BYPASSRLS, owns nothing, may create nothing; its one membership is
  the request role.
* The **request role** (`DB_APP_ROLE`, `wafaa_app`, NOLOGIN) holds exactly the
  privileges the migrations grant, and row-level security applies to it.

`prepare(url)` is what `make run`, `make test` and `make bench` call with whatever
URL they were given: a superuser URL gets the roles created (idempotently) and the
two URLs derived from it; any other URL is taken as already set up by a DBA
(docs/isolation.md has the SQL).
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

DEFAULT_OWNER = "wafaa_owner"
DEFAULT_SERVICE = "wafaa_service"
DEFAULT_APP_ROLE = "wafaa_app"
PUBLIC_FUNCTIONS_REVOKED = (
    "pg_catalog.pg_terminate_backend(integer, bigint)",
    "pg_catalog.pg_cancel_backend(integer)",
    "pg_catalog.lo_create(oid)",
    "pg_catalog.lo_creat(integer)",
    "pg_catalog.lo_from_bytea(oid, bytea)",
    "pg_catalog.lo_put(oid, bigint, bytea)",
    "pg_catalog.lo_get(oid)",
    "pg_catalog.lo_get(oid, bigint, integer)",
    "pg_catalog.lo_open(oid, integer)",
    "pg_catalog.pg_notify(text, text)",
)
_SAFE = "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"


@dataclass(frozen=True)
class RoleUrls:
    service: str  # DATABASE_URL
    owner: str  # MIGRATION_DATABASE_URL


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def derived_password(superuser_password: str | None, user: str) -> str | None:
    """The password the tooling gives a role it creates: none on a server that
    trusts local connections (no password in the superuser URL), else one derived
    from the superuser's, so every run derives the same one and nothing is stored."""
    if not superuser_password:
        return None
    return hmac.new(superuser_password.encode(), f"wafaa-role/{user}".encode(), hashlib.sha256).hexdigest()


def with_user(url: str, user: str) -> str:
    """The same server and database, as `user`, with its derived password if any."""
    parsed = make_url(libpq(url))
    return URL.create(
        parsed.drivername,
        username=user,
        password=derived_password(parsed.password, user),
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    ).render_as_string(hide_password=False)


def _ensure_role(conn: psycopg.Connection, name: str, attributes: str, password: str | None = None) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    statement = sql.SQL(f"{{}} ROLE {{}} {attributes}").format(sql.SQL(verb), sql.Identifier(name))
    if password:
        statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
    try:
        conn.execute(statement)
    except psycopg.errors.DuplicateObject:  # created meanwhile by another database's set-up
        _ensure_role(conn, name, attributes, password)


def bootstrap(
    superuser_url: str,
    *,
    app_role: str = DEFAULT_APP_ROLE,
    owner: str = DEFAULT_OWNER,
    service: str = DEFAULT_SERVICE,
) -> RoleUrls:
    """Create the three roles and hand the database to the owner. Idempotent."""
    parsed = make_url(libpq(superuser_url))
    database = parsed.database
    ident = sql.Identifier
    with psycopg.connect(libpq(superuser_url), autocommit=True) as conn:
        citus = has_citus(conn)
        # On Citus the coordinator opens its connections to the workers as the
        # current role, and an operator's tenant scope switches to the request
        # role (wafaa.tenancy): there it must be able to log in. It has no
        # password, and holds nothing the service's login role does not.
        _ensure_role(conn, app_role, f"{'LOGIN' if citus else 'NOLOGIN'} {_SAFE} NOINHERIT")
        # NOINHERIT: the owner becomes the request role only by SET ROLE (an
        # operator's tenant scope); otherwise the request role's policies would
        # be evaluated, for nothing, in every query of the owner's functions.
        _ensure_role(conn, owner, f"LOGIN {_SAFE} NOINHERIT", derived_password(parsed.password, owner))
        # INHERIT: the login role has the request role's privileges without a SET
        # ROLE (which Citus cannot forward to its workers for a NOLOGIN role).
        _ensure_role(conn, service, f"LOGIN {_SAFE} INHERIT", derived_password(parsed.password, service))
        for member in (owner, service):
            conn.execute(sql.SQL("GRANT {} TO {}").format(ident(app_role), ident(member)))
        # The owner owns the database, hence (PostgreSQL 15) its public schema.
        # Objects an earlier version created as another role (an embedded
        # database from before these roles existed) are handed over too.
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(ident(database), ident(owner)))
        conn.execute(
            sql.SQL(
                """
                DO $$
                DECLARE
                    object record;
                BEGIN
                    FOR object IN
                        SELECT format('ALTER %s %s OWNER TO %I',
                                      CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
                                      c.oid::regclass, {owner}) AS statement
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v')
                          AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = {owner})
                        UNION ALL
                        SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, {owner})
                        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = 'public'
                          AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = {owner})
                        UNION ALL
                        SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, {owner})
                        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                        WHERE n.nspname = 'public' AND t.typtype = 'e'
                          AND t.typowner <> (SELECT oid FROM pg_roles WHERE rolname = {owner})
                    LOOP
                        EXECUTE object.statement;
                    END LOOP;
                END
                $$
                """
            ).format(owner=sql.Literal(owner))
        )
        # Database-level privileges: nobody but the owner may create anything
        # there, temporary objects included.
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(database)))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(ident(database), ident(owner)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(database), ident(service)))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        # Built-in functions PUBLIC may run that let one request reach the
        # others: ending their backends, and large objects (a place to stash
        # data that every backend of the role can read back).
        for function in PUBLIC_FUNCTIONS_REVOKED:
            conn.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(ident(owner)))
        if citus:
            _secure_citus(conn, database, owner, (owner, service, app_role))
    return RoleUrls(service=with_user(superuser_url, service), owner=with_user(superuser_url, owner))


def has_citus(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is not None


# Citus functions that run SQL text of the caller's choosing on other nodes, or
# give a transaction the distributed id of another (which the tenant binding's
# proof names on the workers, wafaa/sql/tenant_binding.sql): nobody's but the
# superuser's on the coordinator. The workers keep assign_distributed_transaction_id:
# the coordinator calls it there, as the current role.
CITUS_COORDINATOR_REVOKED = (
    "pg_catalog.master_run_on_worker(text[], integer[], text[], boolean)",
    "pg_catalog.assign_distributed_transaction_id(integer, bigint, timestamptz)",
)


def _secure_citus(conn: psycopg.Connection, database: str, owner: str, roles: tuple[str, ...]) -> None:
    """What Citus does not carry to the workers by itself, done there, and the
    coordinator's own restrictions."""
    on_workers = [
        # The owner owns the public schema there too (it is NOINHERIT: the
        # database owner's implicit rights on it do not reach it).
        sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)),
        *(sql.SQL(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC") for function in PUBLIC_FUNCTIONS_REVOKED),
        # The coordinator sends each transaction's SET LOCAL commands, the tenant
        # binding's proof among them, as SQL text: a worker's pg_stat_activity
        # would show them to every backend of the same role.
        *(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET track_activities = off").format(
                sql.Identifier(role), sql.Identifier(database)
            )
            for role in roles
        ),
    ]
    for statement in on_workers:
        command = "SET citus.enable_ddl_propagation = off; " + statement.as_string(conn)
        for node, port, success, result in conn.execute("SELECT * FROM run_command_on_workers(%s)", (command,)):
            if not success:
                raise RuntimeError(f"on worker {node}:{port}: {result}")
    conn.execute("SET citus.enable_ddl_propagation = off")
    for function in CITUS_COORDINATOR_REVOKED:
        conn.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    conn.execute("RESET citus.enable_ddl_propagation")


def is_superuser(url: str) -> bool:
    with psycopg.connect(libpq(url), autocommit=True, connect_timeout=5) as conn:
        return bool(conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0])


def prepare(url: str, app_role: str = DEFAULT_APP_ROLE) -> RoleUrls | None:
    """The URLs to use: derived (roles created) from a superuser URL; None when
    `url` names an ordinary role, which the operator has set up already."""
    return bootstrap(url, app_role=app_role) if is_superuser(url) else None


# --- the check production runs at start-up, and /health ----------------------------

ROLE_CHECK_SQL = """
SELECT current_user,
       r.rolsuper,
       r.rolbypassrls,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relowner = r.oid) AS owned,
       has_schema_privilege('public', 'CREATE') AS can_create
FROM pg_roles r WHERE r.rolname = current_user
"""


def role_problem(row: tuple) -> str | None:
    """What is wrong with the service's connection role, as one line, or None."""
    user, superuser, bypassrls, owned, can_create = row
    fix = "connect as the service's login role, see docs/isolation.md"
    if superuser:
        return f"database role {user!r} is a superuser: {fix}"
    if bypassrls:
        return f"database role {user!r} has BYPASSRLS: {fix}"
    if owned:
        return f"database role {user!r} owns {owned} objects of the schema: {fix}"
    if can_create:
        return f"database role {user!r} may create objects in schema public: {fix}"
    return None


def check_connection(execute) -> str | None:
    """`execute`: runs SQL text and returns something with fetchone() (a psycopg
    connection's execute, a SQLAlchemy connection's exec_driver_sql)."""
    return role_problem(tuple(execute(ROLE_CHECK_SQL).fetchone()))


def startup_problem(database_url: str, connect_timeout: int = 5) -> str | None:
    """Production's check before serving: the role problem as one line, None when
    the role is safe. An unreachable database is not a role problem: the service
    starts and answers 503 until the database is back."""
    try:
        with psycopg.connect(libpq(database_url), autocommit=True, connect_timeout=connect_timeout) as conn:
            return check_connection(conn.execute)
    except psycopg.OperationalError:
        return None


def main(argv: list[str]) -> int:
    """python -m wafaa.db_roles URL [APP_ROLE]: print shell assignments of
    DATABASE_URL and MIGRATION_DATABASE_URL (nothing for a non-superuser URL)."""
    import shlex

    urls = prepare(argv[1], *(argv[2:3] or []))
    if urls is not None:
        print(f"DATABASE_URL={shlex.quote(urls.service)}")
        print(f"MIGRATION_DATABASE_URL={shlex.quote(urls.owner)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
