"""Operator commands: flask seed, flask tenants ..., flask admins ..., flask tokens purge.

Input is validated by the same schemas as the API. A refused command prints
`Error: <why>` and exits with status 1; nothing is half-written, because each
command commits once, at its end.
"""

from __future__ import annotations

import functools
import json
import sys
from datetime import UTC

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from wafaa.errors import ApiError
from wafaa.extensions import db
from wafaa.models import AdminRole, SubscriptionTier, Tenant, TenantAdmin, normalize_email
from wafaa.passwords import hash_password, password_problem
from wafaa.schemas.admin import AdminCreateSchema
from wafaa.schemas.tenant import TenantCreateSchema
from wafaa.services import tenants as tenant_service
from wafaa.services.admins import release_email, set_password, unlock_admin
from wafaa.services.audit_log import purge_audit_logs
from wafaa.services.sessions import purge_sessions
from wafaa.tenancy import TenantScopeError, system_scope

DEMO_TENANTS = (
    ("acme", "Acme Corporation", SubscriptionTier.PREMIUM),
    ("globex", "Globex Corporation", SubscriptionTier.BASIC),
    ("initech", "Initech", SubscriptionTier.FREE),
)
DEMO_ROLES = (AdminRole.OWNER, AdminRole.ADMIN, AdminRole.VIEWER)


def _validated(schema, data: dict) -> dict:
    try:
        return schema.load(data)
    except ValidationError as error:
        problems = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in error.messages.items())
        raise click.ClickException(problems) from None


def _read_password(password_stdin: bool) -> str:
    """From standard input when asked to (or when it is not a terminal), else a prompt."""
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem:
        raise click.ClickException(problem)
    return password


def _commit_or_refuse(message: str) -> None:
    """Commit; a unique constraint lost to a concurrent command is a refusal."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(message) from None


def _tenant_by_slug(slug: str) -> Tenant:
    tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise click.ClickException(f"No tenant with slug {slug!r}.")
    return tenant


@click.command("seed")
@click.option("--force", is_flag=True, help="Seed even in production (APP_ENV=production).")
@with_appcontext
def seed_command(force: bool) -> None:
    """Create the demo tenants acme, globex and initech, each with an owner, an admin
    and a viewer (password: SEED_ADMIN_PASSWORD). Running it again changes nothing."""
    if current_app.config["ENV_NAME"] == "production" and not force:
        raise click.ClickException(
            "refusing to create demo tenants in production (APP_ENV=production); add --force if you mean it"
        )
    password = current_app.config.get("SEED_ADMIN_PASSWORD")
    if not password:
        raise click.ClickException("SEED_ADMIN_PASSWORD is not set.")
    problem = password_problem(password)
    if problem:
        raise click.ClickException(f"SEED_ADMIN_PASSWORD: {problem}")
    created = []
    with system_scope("flask seed"):
        for slug, name, tier in DEMO_TENANTS:
            tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
            if tenant is None:
                tenant = Tenant(name=name, slug=slug, subscription_tier=tier)
                db.session.add(tenant)
                db.session.flush()
                created.append(f"tenant {slug}")
            for role in DEMO_ROLES:
                email = f"{role.value}@{slug}.example.com"
                if tenant_service.email_taken(email):
                    continue
                db.session.add(
                    TenantAdmin(
                        tenant_id=tenant.id,
                        email=email,
                        full_name=f"{name} {role.value.title()}",
                        role=role,
                        password_hash=hash_password(password),
                    )
                )
                created.append(email)
        db.session.commit()
    if created:
        click.echo(f"Seeded {len(created)} records: {', '.join(created)}.")
    else:
        click.echo("Demo data already present: nothing changed.")


tenants_group = AppGroup("tenants", help="Create and manage tenants.")


@tenants_group.command("create")
@click.option("--name", required=True, help="Display name of the tenant.")
@click.option("--slug", required=True, help="URL-safe identifier: lower-case letters, digits, hyphens.")
@click.option("--owner-email", required=True, help="Email of the tenant's first owner.")
@click.option("--owner-name", required=True, help="Full name of the tenant's first owner.")
@click.option("--tier", type=click.Choice([t.value for t in SubscriptionTier]), default="free", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the owner's password from standard input.")
def create_tenant_command(name, slug, owner_email, owner_name, tier, password_stdin) -> None:
    """Create a tenant and its owner. The owner's password is prompted for."""
    tenant_data = _validated(TenantCreateSchema(), {"name": name, "slug": slug, "subscription_tier": tier})
    password = _read_password(password_stdin)
    owner = _validated(
        AdminCreateSchema(),
        {"email": owner_email, "full_name": owner_name, "role": "owner", "password": password},
    )
    with system_scope("flask tenants create"):
        try:
            tenant = tenant_service.create_tenant(
                name=tenant_data["name"],
                slug=tenant_data["slug"],
                subscription_tier=tenant_data["subscription_tier"],
                owner_email=owner["email"],
                owner_name=owner["full_name"],
                owner_password=password,
            )
        except ApiError as error:
            raise click.ClickException(error.message) from None
        _commit_or_refuse("A tenant with this slug, or an admin with this email, was created meanwhile.")
    click.echo(f"Created tenant {tenant.slug} ({tenant.id}) with owner {owner['email']}.")


@tenants_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
def list_tenants_command(as_json: bool) -> None:
    """List tenants with their number of admins (tab-separated, under a header)."""
    with system_scope("flask tenants list"):
        rows = db.session.execute(
            select(Tenant, func.count(TenantAdmin.id))
            .outerjoin(TenantAdmin, TenantAdmin.tenant_id == Tenant.id)
            .group_by(Tenant.id)
            .order_by(Tenant.slug)
        ).all()
    tenants = [
        {
            "slug": tenant.slug,
            "id": str(tenant.id),
            "tier": tenant.subscription_tier.value,
            "state": "active" if tenant.is_active else "inactive",
            "admins": admins,
        }
        for tenant, admins in rows
    ]
    if as_json:
        click.echo(json.dumps(tenants))
        return
    click.echo("\t".join(("slug", "id", "tier", "state", "admins")))
    for row in tenants:
        click.echo("\t".join((row["slug"], row["id"], row["tier"], row["state"], plural(row["admins"], "admin"))))


def _set_active(slug: str, active: bool) -> None:
    with system_scope("flask tenants activate/deactivate"):
        tenant = _tenant_by_slug(slug)
        revoked = tenant_service.set_tenant_active(tenant, active)
        db.session.commit()
    state = "activated" if active else f"deactivated ({revoked} sessions revoked)"
    click.echo(f"Tenant {slug} {state}.")


@tenants_group.command("deactivate")
@click.argument("slug")
def deactivate_tenant_command(slug: str) -> None:
    """Deactivate a tenant: its admins can no longer log in, their sessions end now."""
    _set_active(slug, False)


@tenants_group.command("activate")
@click.argument("slug")
def activate_tenant_command(slug: str) -> None:
    """Re-activate a deactivated tenant."""
    _set_active(slug, True)


admins_group = AppGroup("admins", help="Manage tenant admins.")


@admins_group.command("create")
@click.option("--tenant", "slug", required=True, help="Slug of the tenant.")
@click.option("--email", required=True)
@click.option("--name", "full_name", required=True)
@click.option("--role", type=click.Choice([r.value for r in AdminRole]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin_command(slug, email, full_name, role, password_stdin) -> None:
    """Add an admin to a tenant. The password is prompted for."""
    password = _read_password(password_stdin)
    data = _validated(AdminCreateSchema(), {"email": email, "full_name": full_name, "role": role, "password": password})
    with system_scope("flask admins create"):
        tenant = _tenant_by_slug(slug)
        if tenant_service.email_taken(data["email"]):
            raise click.ClickException(f"An admin with email {data['email']!r} already exists.")
        db.session.add(
            TenantAdmin(
                tenant_id=tenant.id,
                email=data["email"],
                full_name=data["full_name"],
                role=data["role"],
                password_hash=hash_password(password),
            )
        )
        _commit_or_refuse(f"An admin with email {data['email']!r} was created meanwhile.")
    click.echo(f"Created {role} {data['email']} in tenant {slug}.")


def _admin_by_email(email: str) -> TenantAdmin:
    admin = db.session.scalar(select(TenantAdmin).where(TenantAdmin.email == normalize_email(email)))
    if admin is None:
        raise click.ClickException(f"No admin with email {email!r}.")
    return admin


@admins_group.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password_command(email: str, password_stdin: bool) -> None:
    """Set an admin's password; all of their sessions are revoked and their failed
    logins forgotten (no source stays throttled)."""
    password = _read_password(password_stdin)
    with system_scope("flask admins set-password"):
        revoked = set_password(_admin_by_email(email), password)
        db.session.commit()
    click.echo(f"Password changed; {plural(revoked, 'session')} revoked.")


@admins_group.command("unlock")
@click.argument("email")
def unlock_command(email: str) -> None:
    """Forget an admin's failed logins: every throttled source may try again now."""
    with system_scope("flask admins unlock"):
        cleared = unlock_admin(_admin_by_email(email))
        db.session.commit()
    click.echo(f"Unlocked {normalize_email(email)}; {plural(cleared, 'throttled source')} cleared.")


@admins_group.command("release-email")
@click.argument("email")
def release_email_command(email: str) -> None:
    """Free the email address of a deactivated admin, so that it can be used again
    (emails are unique across tenants). The admin keeps its history under a
    placeholder address."""
    with system_scope("flask admins release-email"):
        try:
            placeholder = release_email(_admin_by_email(email))
        except ApiError as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
    click.echo(f"Released {normalize_email(email)}; the deactivated admin is now {placeholder}.")


tokens_group = AppGroup("tokens", help="Maintain login sessions.")


@tokens_group.command("purge")
def purge_tokens_command() -> None:
    """Delete expired sessions and sessions revoked more than SESSION_RETENTION_DAYS ago."""
    count = purge_sessions()
    click.echo(f"Purged {count} sessions.")


audit_group = AppGroup("audit", help="Maintain the audit log.")


@audit_group.command("purge")
@click.option(
    "--before",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Delete entries older than this date (UTC). Default: AUDIT_RETENTION_DAYS ago.",
)
def purge_audit_command(before) -> None:
    """Delete old audit entries. Each tenant's log keeps a record of the purge."""
    cutoff = before.replace(tzinfo=UTC) if before else None
    with system_scope("flask audit purge"):
        try:
            cutoff, deleted = purge_audit_logs(cutoff)
        except ApiError as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
    total = sum(deleted.values())
    click.echo(
        f"Purged {plural(total, 'audit entry', 'audit entries')} older than {cutoff:%Y-%m-%d %H:%M} UTC"
        f" from {plural(len(deleted), 'tenant')}."
    )


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def _needs_owner(command: click.Command) -> click.Command:
    """Operators' commands work as the schema owner: without its URL, or with a
    database that does not answer, say so in one line instead of a traceback."""
    callback = command.callback

    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except TenantScopeError as error:
            raise click.ClickException(str(error)) from None
        except OperationalError as error:
            # psycopg's first line names the host and port and why (never the password).
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            raise click.ClickException(f"the database does not answer: {reason}") from None

    command.callback = functools.update_wrapper(run, callback)
    return command


_GROUPS = (tenants_group, admins_group, tokens_group, audit_group)
for _command in (seed_command, *(c for g in _GROUPS for c in g.commands.values())):
    _needs_owner(_command)


def init_app(app: Flask) -> None:
    from wafaa.citus import citus_cli

    app.cli.add_command(seed_command)
    app.cli.add_command(citus_cli)
    for group in _GROUPS:
        app.cli.add_command(group)
