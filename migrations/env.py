"""Alembic environment, run by flask-migrate (`flask db upgrade|downgrade|...`).

Migrations run in the system scope (see wafaa.tenancy), on the schema owner's
connection (MIGRATION_DATABASE_URL), never as the role that serves requests.
"""

import logging

import click
from alembic import context
from flask import current_app

from wafaa.tenancy import TenantScopeError, current_scope, engine_for, system_scope

log = logging.getLogger("alembic.env")
config = context.config
db = current_app.extensions["migrate"].db


def include_object(obj, name, type_, reflected, compare_to):
    # Alembic's own bookkeeping table is not part of our models.
    return not (type_ == "table" and name == "alembic_version")


def run_migrations_offline() -> None:
    """`flask db upgrade --sql`: print the SQL instead of running it."""
    context.configure(
        url=db.engine.url.render_as_string(hide_password=False),
        target_metadata=db.metadata,
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    def skip_empty_autogenerate(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            log.info("No changes in schema detected.")

    configure_args = dict(current_app.extensions["migrate"].configure_args)
    configure_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    configure_args.setdefault("compare_type", True)
    with system_scope("database migrations"):
        try:
            engine = engine_for(current_scope())
        except TenantScopeError as error:
            raise click.ClickException(str(error)) from None
    with system_scope("database migrations"), engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=db.metadata,
            include_object=include_object,
            # One transaction for the whole upgrade: PostgreSQL DDL is
            # transactional, so a failed migration leaves nothing behind.
            transaction_per_migration=False,
            **configure_args,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
