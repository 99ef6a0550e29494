"""Distributing the schema on Citus: `flask citus distribute`, run once by operators
after `flask db upgrade` (and again after any later one: it is idempotent).

On plain PostgreSQL it does nothing and says so. With the `citus` extension in the
database (the coordinator's), as the schema owner:

* the registries of slugs and emails (wafaa.models.registry) and the binding key
  (wafaa_private.binding_key, which the shards' policies read on every worker)
  become reference tables, replicated to every node;
* `tenants` is distributed by `id`, and every tenant-owned table by `tenant_id`,
  co-located with it: all rows of a tenant live on one node, so a request (which
  only ever touches its own tenant) runs there whole;
* the `tenant_isolation` policies compare with `wafaa_current_tenant()` without
  a subquery, which Citus does not allow in the policies of distributed tables;
* the database's `citus.propagate_set_commands` becomes `local`, so that the
  tenant binding and `app.system`, set with SET LOCAL (wafaa/sql), reach the
  workers' shards, where row-level security reads them.

`alembic_version` stays a local table of the coordinator. The `updated_at` triggers
are distributed with their tables (citus.enable_unsafe_triggers, for this
transaction only): they stamp the row being written and read no other table,
which is what makes a trigger safe on a shard. Tables already distributed are left
as they are, so re-running changes nothing.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import text
from sqlalchemy.engine import Connection

from wafaa.extensions import db
from wafaa.tenancy import current_scope, engine_for, system_scope

REFERENCE_TABLES = ("tenant_slugs", "admin_emails", "wafaa_private.binding_key")
DISTRIBUTED = "tenants"  # by id: the tenant's own row is co-located with its data


def tenant_tables() -> list[str]:
    """Every tenant-owned table, from the model registry (in foreign-key order)."""
    from wafaa.models import TenantScoped

    scoped = {m.local_table.name for m in db.Model.registry.mappers if issubclass(m.class_, TenantScoped)}
    return [table.name for table in db.metadata.sorted_tables if table.name in scoped]


def has_citus(connection: Connection) -> bool:
    return bool(connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).first())


# Foreign keys to the registries from tables that are not distributed yet.
_REGISTRY_KEYS = text(
    """
    SELECT c.conrelid::regclass::text AS table, c.conname AS name, pg_get_constraintdef(c.oid) AS definition
    FROM pg_constraint c
    WHERE c.contype = 'f' AND c.confrelid IN ('tenant_slugs'::regclass, 'admin_emails'::regclass)
      AND NOT EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = c.conrelid AND p.partmethod = 'h')
    ORDER BY 1, 2
    """
)


def _citus_type(connection: Connection, table: str) -> str | None:
    """'reference', 'distributed', 'local' (a Citus local table: what a table that
    references a reference table becomes meanwhile), or None (not Citus's)."""
    return connection.execute(
        # pg_dist_partition, not the citus_tables view: the view measures every
        # table through new connections, which would wait on this transaction's locks.
        text(
            "SELECT CASE WHEN partmethod = 'h' THEN 'distributed' WHEN repmodel = 't' THEN 'reference' "
            "ELSE 'local' END FROM pg_dist_partition WHERE logicalrelid = CAST(:table AS regclass)"
        ),
        {"table": table},
    ).scalar()


def _policy_without_subquery(connection: Connection, table: str, column: str) -> None:
    """Citus refuses subqueries in the policies of distributed tables. The policy
    compares with the function itself instead of `(SELECT wafaa_current_tenant())`
    (which PostgreSQL evaluates once per statement); the rule is the same."""
    tenant = "wafaa_current_tenant()"
    role = current_app.config["DB_APP_ROLE"]  # a plain identifier (config.py)
    connection.exec_driver_sql(
        f"ALTER POLICY tenant_isolation ON {table} TO {role} "
        f"USING ({column} = {tenant}) WITH CHECK ({column} = {tenant})"
    )


# Columns the request role may not write, whose default Citus evaluates on the
# coordinator and sends to the shard as a value of the INSERT: the role is let
# write them there, and a trigger on the shard overwrites whatever came with the
# shard's own clock, so that they stay the server's (an audit row dated by SQL of
# the service's role would count as a recent failed login for ever).
SERVER_CLOCK = {
    "audit_logs": {"created_at": "clock_timestamp()"},
    "tenant_admins": {"created_at": "now()", "updated_at": "now()"},
}


def _server_clock_on_insert(connection: Connection) -> None:
    role = current_app.config["DB_APP_ROLE"]
    for table, columns in SERVER_CLOCK.items():
        function = f"wafaa_{table}_insert_clock"
        body = " ".join(f"NEW.{column} := {clock};" for column, clock in columns.items())
        connection.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
            f"SET search_path = pg_catalog, pg_temp AS $$ BEGIN {body} RETURN NEW; END $$"
        )
        exists = connection.execute(
            text("SELECT 1 FROM pg_trigger WHERE tgrelid = CAST(:table AS regclass) AND tgname = :name"),
            {"table": table, "name": f"{table}_insert_clock"},
        ).first()
        if not exists:
            connection.exec_driver_sql(
                f"CREATE TRIGGER {table}_insert_clock BEFORE INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {function}()"
            )
        connection.exec_driver_sql(f"GRANT INSERT ({', '.join(columns)}) ON {table} TO {role}")


def distribute(connection: Connection) -> list[str]:
    """Distribute what is not yet; returns one line per table changed."""
    done = []
    connection.execute(text("SET LOCAL citus.enable_unsafe_triggers = on"))
    # One connection per node for the whole transaction: the tables reference
    # each other and the reference tables, which Citus requires for that.
    connection.execute(text("SET LOCAL citus.multi_shard_modify_mode = sequential"))
    for table in ("tenant_slugs", "admin_emails", DISTRIBUTED, *tenant_tables()):
        _policy_without_subquery(connection, table, "id" if table == DISTRIBUTED else "tenant_id")
    # Citus cannot distribute a table while it references a table that is not
    # yet distributed, nor one that a not-yet-distributed table references: the
    # keys to the registries are set aside, then made again between the
    # distributed tables and the reference tables.
    registry_keys = connection.execute(_REGISTRY_KEYS).all()
    for key in registry_keys:
        connection.exec_driver_sql(f"ALTER TABLE {key.table} DROP CONSTRAINT {key.name}")
    _server_clock_on_insert(connection)
    for table in REFERENCE_TABLES:
        if _citus_type(connection, table) != "reference":
            connection.execute(text("SELECT create_reference_table(:table)"), {"table": table})
            done.append(f"{table}: reference table")
    for table in (DISTRIBUTED, *tenant_tables()):
        if _citus_type(connection, table) != "distributed":
            column, colocate = ("id", "none") if table == DISTRIBUTED else ("tenant_id", DISTRIBUTED)
            connection.execute(
                text("SELECT create_distributed_table(:table, :column, colocate_with => :colocate)"),
                {"table": table, "column": column, "colocate": colocate},
            )
            done.append(f"{table}: distributed by {column}")
    for key in registry_keys:
        connection.exec_driver_sql(f"ALTER TABLE {key.table} ADD CONSTRAINT {key.name} {key.definition}")
    database = connection.execute(text("SELECT current_database()")).scalar()
    # The owner's database settings (a name from the server itself); new
    # connections take them. SET LOCAL reaches the workers; and a transaction
    # that reads many shards and then writes a registry (the operators' commands)
    # keeps one connection per node, which Citus requires around the keys to
    # reference tables (the service's own statements each touch one tenant).
    for setting in ("propagate_set_commands = local", "multi_shard_modify_mode = sequential"):
        connection.exec_driver_sql(f'ALTER DATABASE "{database}" SET citus.{setting}')
    return done


citus_cli = AppGroup("citus", help="The schema on a Citus cluster (docs/scaling.md).")


@citus_cli.command("distribute")
def distribute_command() -> None:
    """Distribute the tables by tenant (once, after `flask db upgrade`; idempotent)."""
    with system_scope("distribute the schema on Citus"):
        engine = engine_for(current_scope())
    with system_scope("distribute the schema on Citus"), engine.connect() as connection:
        if not has_citus(connection):
            click.echo("The citus extension is not installed in this database: nothing to distribute.")
            return
        done = distribute(connection)
        connection.commit()
    # The setting applies to connections opened from now on: none of this
    # process's pooled ones may serve on without it.
    for pooled in db.engines.values():
        pooled.dispose()
    click.echo("\n".join(done) if done else "Everything is already distributed.")
