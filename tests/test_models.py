"""Database-level constraints, checked with raw SQL beneath the application.

The schema (built by the migrations) must refuse bad data on its own, whatever
code writes it: slug format and length, normalised and unique emails, known
tiers and roles, JSON defaults and shapes, the updated_at trigger, timestamptz
columns and the ON DELETE rules. `raw_db` is a superuser psycopg connection in
autocommit mode, so each statement is its own transaction and row-level security
does not get in the way.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from wafaa.models import AdminRole, SubscriptionTier

PAST = datetime(2000, 1, 1, tzinfo=UTC)


def insert_tenant(conn, slug: str = "acme", **columns) -> uuid.UUID:
    """A tenant by raw SQL, its slug registered in the same statement (wafaa.models.registry)."""
    values = {"id": uuid.uuid4(), "name": "Acme", "slug": slug, **columns}
    names = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    row = conn.execute(
        "WITH registered AS (INSERT INTO tenant_slugs (slug, tenant_id) VALUES (%s, %s)) "
        f"INSERT INTO tenants ({names}) VALUES ({placeholders}) RETURNING id",
        [values["slug"], values["id"], *values.values()],
    ).fetchone()
    return row[0]


def insert_admin(conn, tenant_id: uuid.UUID, email: str = "owner@acme.test", **columns) -> uuid.UUID:
    values = {
        "tenant_id": tenant_id,
        "email": email,
        "password_hash": "$2b$12$" + "x" * 53,
        "full_name": "Owner",
        "role": "owner",
        **columns,
    }
    names = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    row = conn.execute(
        "WITH registered AS (INSERT INTO admin_emails (email, tenant_id) VALUES (%s, %s)) "
        f"INSERT INTO tenant_admins ({names}) VALUES ({placeholders}) RETURNING id",
        [values["email"], values["tenant_id"], *values.values()],
    ).fetchone()
    return row[0]


def insert_session(conn, tenant_id: uuid.UUID, admin_id: uuid.UUID) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO auth_sessions (tenant_id, admin_id, refresh_jti, last_used_at, expires_at) "
        "VALUES (%s, %s, %s, now(), now() + interval '7 days') RETURNING id",
        [tenant_id, admin_id, uuid.uuid4().hex],
    ).fetchone()
    return row[0]


def insert_audit(conn, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type) "
        "VALUES (%s, %s, 'tenant.updated', 'tenant') RETURNING id",
        [tenant_id, user_id],
    ).fetchone()
    return row[0]


def count(conn, table: str, where: str = "true", params=()) -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]


# --- tenants.slug ---------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["a", "acme", "acme-2", "a1-b2-c3", "9lives", "a" * 100])
def test_well_formed_slugs_are_accepted(raw_db, slug):
    insert_tenant(raw_db, slug)
    assert count(raw_db, "tenants", "slug = %s", [slug]) == 1


@pytest.mark.parametrize(
    "slug",
    ["Acme", "ACME", "ac me", " acme", "-acme", "acme-", "ac--me", "ac_me", "ac.me", "acmé", "", "-"],
)
def test_malformed_slugs_are_refused_by_the_check_constraint(raw_db, slug):
    with pytest.raises(errors.CheckViolation, match="ck_tenants_slug_format"):
        insert_tenant(raw_db, slug)
    assert count(raw_db, "tenants") == 0


def test_slugs_longer_than_100_characters_are_refused(raw_db):
    with pytest.raises(errors.StringDataRightTruncation):
        insert_tenant(raw_db, "a" * 101)
    assert count(raw_db, "tenants") == 0


def test_slug_is_unique(raw_db):
    insert_tenant(raw_db, "acme")
    # Through the registry of slugs, unique across tenants on Citus as well.
    with pytest.raises(errors.UniqueViolation, match="pk_tenant_slugs"):
        insert_tenant(raw_db, "acme", name="Another Acme")


def test_an_update_cannot_break_the_slug_rule_either(raw_db):
    tenant_id = insert_tenant(raw_db, "acme")
    with pytest.raises(errors.CheckViolation):
        raw_db.execute("UPDATE tenants SET slug = 'Not A Slug' WHERE id = %s", [tenant_id])
    assert raw_db.execute("SELECT slug FROM tenants WHERE id = %s", [tenant_id]).fetchone()[0] == "acme"


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_tenant_names_are_refused(raw_db, name):
    with pytest.raises(errors.CheckViolation, match="ck_tenants_name_not_blank"):
        insert_tenant(raw_db, "acme", name=name)


# --- tenant_admins.email -------------------------------------------------------------


@pytest.mark.parametrize("email", ["Owner@acme.test", "OWNER@ACME.TEST", " owner@acme.test", "owner@acme.test "])
def test_emails_must_be_stored_normalised(raw_db, email):
    tenant_id = insert_tenant(raw_db)
    with pytest.raises(errors.CheckViolation, match="ck_tenant_admins_email_normalized"):
        insert_admin(raw_db, tenant_id, email)
    assert count(raw_db, "tenant_admins") == 0


@pytest.mark.parametrize("email", ["no-at-sign.test", "@acme.test"])
def test_emails_need_a_local_part_and_an_at_sign(raw_db, email):
    tenant_id = insert_tenant(raw_db)
    with pytest.raises(errors.CheckViolation, match="ck_tenant_admins_email_has_at"):
        insert_admin(raw_db, tenant_id, email)


def test_an_email_registered_to_another_tenant_cannot_be_used(raw_db):
    # The registry row names its tenant: an admin of another tenant cannot point at it.
    acme = insert_tenant(raw_db, "acme")
    globex = insert_tenant(raw_db, "globex", name="Globex")
    raw_db.execute("INSERT INTO admin_emails (email, tenant_id) VALUES ('shared@example.test', %s)", [acme])
    with pytest.raises(errors.ForeignKeyViolation, match="fk_tenant_admins_tenant_id_email_admin_emails"):
        raw_db.execute(
            "INSERT INTO tenant_admins (tenant_id, email, password_hash, full_name, role) "
            "VALUES (%s, 'shared@example.test', 'x', 'Intruder', 'owner')",
            [globex],
        )


def test_emails_are_unique_across_all_tenants(raw_db):
    acme = insert_tenant(raw_db, "acme")
    globex = insert_tenant(raw_db, "globex", name="Globex")
    insert_admin(raw_db, acme, "shared@example.test")
    # Through the registry of emails, unique across tenants on Citus as well.
    with pytest.raises(errors.UniqueViolation, match="pk_admin_emails"):
        insert_admin(raw_db, globex, "shared@example.test")
    assert count(raw_db, "tenant_admins") == 1


def test_blank_full_names_are_refused(raw_db):
    tenant_id = insert_tenant(raw_db)
    with pytest.raises(errors.CheckViolation, match="ck_tenant_admins_full_name_not_blank"):
        insert_admin(raw_db, tenant_id, full_name="  ")


def test_an_admin_needs_an_existing_tenant(raw_db):
    with pytest.raises(errors.ForeignKeyViolation):
        insert_admin(raw_db, uuid.uuid4())


# --- enum types -------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["free", "basic", "premium"])
def test_known_subscription_tiers_are_accepted(raw_db, tier):
    insert_tenant(raw_db, subscription_tier=tier)
    assert raw_db.execute("SELECT subscription_tier::text FROM tenants").fetchone()[0] == tier


@pytest.mark.parametrize("tier", ["gold", "FREE", "Premium", ""])
def test_unknown_subscription_tiers_are_refused_by_the_enum_type(raw_db, tier):
    with pytest.raises(errors.InvalidTextRepresentation, match="subscription_tier"):
        insert_tenant(raw_db, subscription_tier=tier)


@pytest.mark.parametrize("role", ["superuser", "OWNER", "member", ""])
def test_unknown_admin_roles_are_refused_by_the_enum_type(raw_db, role):
    tenant_id = insert_tenant(raw_db)
    with pytest.raises(errors.InvalidTextRepresentation, match="admin_role"):
        insert_admin(raw_db, tenant_id, role=role)


def test_enum_types_hold_exactly_the_application_values(raw_db):
    def labels(type_name: str) -> list[str]:
        rows = raw_db.execute(
            "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
            "WHERE t.typname = %s ORDER BY e.enumsortorder",
            [type_name],
        ).fetchall()
        return [r[0] for r in rows]

    assert labels("subscription_tier") == [t.value for t in SubscriptionTier]
    assert labels("admin_role") == [r.value for r in AdminRole]


def test_tenant_defaults_are_free_active_and_empty_settings(raw_db):
    tenant_id = insert_tenant(raw_db)
    tier, active, settings = raw_db.execute(
        "SELECT subscription_tier::text, is_active, settings FROM tenants WHERE id = %s", [tenant_id]
    ).fetchone()
    assert (tier, active, settings) == ("free", True, {})


# --- JSON columns ---------------------------------------------------------------------


def test_settings_default_to_an_empty_object(raw_db):
    tenant_id = insert_tenant(raw_db)
    assert raw_db.execute("SELECT settings FROM tenants WHERE id = %s", [tenant_id]).fetchone()[0] == {}


def test_settings_cannot_be_null(raw_db):
    with pytest.raises(errors.NotNullViolation, match="settings"):
        insert_tenant(raw_db, settings=None)


@pytest.mark.parametrize("value", [[], [1, 2], "text", 42, True])
def test_settings_must_be_a_json_object(raw_db, value):
    with pytest.raises(errors.CheckViolation, match="ck_tenants_settings_is_object"):
        insert_tenant(raw_db, settings=Jsonb(value))


def test_settings_accept_a_json_object(raw_db):
    tenant_id = insert_tenant(raw_db, settings=Jsonb({"language": "ar", "nested": {"a": [1, 2]}}))
    stored = raw_db.execute("SELECT settings FROM tenants WHERE id = %s", [tenant_id]).fetchone()[0]
    assert stored == {"language": "ar", "nested": {"a": [1, 2]}}


def test_audit_details_default_to_an_empty_object_and_cannot_be_null(raw_db):
    tenant_id = insert_tenant(raw_db)
    audit_id = insert_audit(raw_db, tenant_id)
    assert raw_db.execute("SELECT details FROM audit_logs WHERE id = %s", [audit_id]).fetchone()[0] == {}
    with pytest.raises(errors.NotNullViolation, match="details"):
        raw_db.execute(
            "INSERT INTO audit_logs (tenant_id, action, resource_type, details) VALUES (%s, 'x', 'y', NULL)",
            [tenant_id],
        )


@pytest.mark.parametrize(("table", "column"), [("tenants", "settings"), ("audit_logs", "details")])
def test_json_columns_are_jsonb_not_null_with_an_empty_object_default(raw_db, table, column):
    data_type, nullable, default = raw_db.execute(
        "SELECT data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s AND column_name = %s",
        [table, column],
    ).fetchone()
    assert data_type == "jsonb"
    assert nullable == "NO"
    assert default == "'{}'::jsonb"


# --- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["tenants", "tenant_admins"])
def test_updated_at_is_set_by_a_trigger_on_every_raw_update(raw_db, table):
    tenant_id = insert_tenant(raw_db, created_at=PAST, updated_at=PAST)
    if table == "tenants":
        row_id = tenant_id
        change = "name = 'Acme Renamed'"
    else:
        row_id = insert_admin(raw_db, tenant_id, created_at=PAST, updated_at=PAST)
        change = "full_name = 'Renamed Owner'"
    assert raw_db.execute(f"SELECT updated_at FROM {table} WHERE id = %s", [row_id]).fetchone()[0] == PAST

    raw_db.execute(f"UPDATE {table} SET {change} WHERE id = %s", [row_id])

    created_at, updated_at, now = raw_db.execute(
        f"SELECT created_at, updated_at, now() FROM {table} WHERE id = %s", [row_id]
    ).fetchone()
    assert created_at == PAST  # untouched
    assert PAST < updated_at <= now


def test_the_trigger_overrides_an_explicit_updated_at(raw_db):
    # Even an UPDATE that tries to write updated_at itself gets the current time.
    tenant_id = insert_tenant(raw_db, updated_at=PAST)
    raw_db.execute("UPDATE tenants SET updated_at = %s, name = 'X' WHERE id = %s", [PAST, tenant_id])
    updated_at = raw_db.execute("SELECT updated_at FROM tenants WHERE id = %s", [tenant_id]).fetchone()[0]
    assert updated_at > PAST


def test_created_at_and_updated_at_default_to_the_insert_time(raw_db):
    tenant_id = insert_tenant(raw_db)
    created_at, updated_at, now = raw_db.execute(
        "SELECT created_at, updated_at, now() FROM tenants WHERE id = %s", [tenant_id]
    ).fetchone()
    assert created_at is not None and updated_at is not None
    assert created_at <= now and updated_at <= now


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("tenants", "created_at"),
        ("tenants", "updated_at"),
        ("tenant_admins", "created_at"),
        ("tenant_admins", "updated_at"),
        ("tenant_admins", "last_login"),
        ("audit_logs", "created_at"),
        ("auth_sessions", "created_at"),
        ("auth_sessions", "expires_at"),
    ],
)
def test_timestamp_columns_are_timestamptz(raw_db, table, column):
    data_type = raw_db.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s AND column_name = %s",
        [table, column],
    ).fetchone()[0]
    assert data_type == "timestamp with time zone"


def test_no_column_anywhere_is_a_naive_timestamp(raw_db):
    naive = raw_db.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'"
    ).fetchall()
    assert naive == []


def test_timestamps_are_stored_as_instants_whatever_the_session_time_zone(raw_db):
    tenant_id = insert_tenant(raw_db, created_at=PAST)
    raw_db.execute("SET TIME ZONE 'Asia/Riyadh'")
    try:
        stored = raw_db.execute("SELECT created_at FROM tenants WHERE id = %s", [tenant_id]).fetchone()[0]
    finally:
        raw_db.execute("SET TIME ZONE 'UTC'")
    assert stored == PAST  # same instant, whatever the offset it is shown with


# --- ON DELETE rules ------------------------------------------------------------------


def test_deleting_a_tenant_cascades_to_its_admins_sessions_and_audit_rows(raw_db):
    acme = insert_tenant(raw_db, "acme")
    owner = insert_admin(raw_db, acme, "owner@acme.test")
    viewer = insert_admin(raw_db, acme, "viewer@acme.test", role="viewer")
    insert_session(raw_db, acme, owner)
    insert_session(raw_db, acme, viewer)
    insert_audit(raw_db, acme, owner)  # names an admin: NO ACTION must not block the cascade
    insert_audit(raw_db, acme)
    # Another tenant's rows must survive.
    globex = insert_tenant(raw_db, "globex", name="Globex")
    globex_owner = insert_admin(raw_db, globex, "owner@globex.test")
    insert_session(raw_db, globex, globex_owner)
    insert_audit(raw_db, globex, globex_owner)

    raw_db.execute("DELETE FROM tenants WHERE id = %s", [acme])

    for table in ("tenant_admins", "auth_sessions", "audit_logs"):
        assert count(raw_db, table, "tenant_id = %s", [acme]) == 0, table
        assert count(raw_db, table, "tenant_id = %s", [globex]) == 1, table
    assert count(raw_db, "tenants") == 1


def test_deleting_an_admin_deletes_their_sessions(raw_db):
    tenant_id = insert_tenant(raw_db)
    owner = insert_admin(raw_db, tenant_id, "owner@acme.test")
    other = insert_admin(raw_db, tenant_id, "other@acme.test", role="admin")
    insert_session(raw_db, tenant_id, owner)
    insert_session(raw_db, tenant_id, other)
    raw_db.execute("DELETE FROM tenant_admins WHERE id = %s", [owner])
    assert count(raw_db, "auth_sessions", "admin_id = %s", [owner]) == 0
    assert count(raw_db, "auth_sessions", "admin_id = %s", [other]) == 1


def test_an_admin_named_by_audit_rows_cannot_be_deleted_alone(raw_db):
    tenant_id = insert_tenant(raw_db)
    owner = insert_admin(raw_db, tenant_id)
    insert_audit(raw_db, tenant_id, owner)
    with pytest.raises(errors.ForeignKeyViolation, match="fk_audit_logs_tenant_id_user_id_tenant_admins"):
        raw_db.execute("DELETE FROM tenant_admins WHERE id = %s", [owner])
    assert count(raw_db, "tenant_admins") == 1
    assert count(raw_db, "audit_logs") == 1


def test_a_session_cannot_pair_a_tenant_with_another_tenants_admin(raw_db):
    acme = insert_tenant(raw_db, "acme")
    globex = insert_tenant(raw_db, "globex", name="Globex")
    globex_owner = insert_admin(raw_db, globex, "owner@globex.test")
    with pytest.raises(errors.ForeignKeyViolation, match="fk_auth_sessions_tenant_id_admin_id_tenant_admins"):
        insert_session(raw_db, acme, globex_owner)


def test_an_audit_row_cannot_name_another_tenants_admin(raw_db):
    acme = insert_tenant(raw_db, "acme")
    globex = insert_tenant(raw_db, "globex", name="Globex")
    globex_owner = insert_admin(raw_db, globex, "owner@globex.test")
    with pytest.raises(errors.ForeignKeyViolation, match="fk_audit_logs_tenant_id_user_id_tenant_admins"):
        insert_audit(raw_db, acme, globex_owner)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            "tenant_admins",
            # The email's registration is freed explicitly (it outlives nothing by accident: NO ACTION).
            {"fk_tenant_admins_tenant_id_tenants": "c", "fk_tenant_admins_tenant_id_email_admin_emails": "a"},
        ),
        (
            "auth_sessions",
            {"fk_auth_sessions_tenant_id_tenants": "c", "fk_auth_sessions_tenant_id_admin_id_tenant_admins": "c"},
        ),
        (
            "audit_logs",
            {"fk_audit_logs_tenant_id_tenants": "c", "fk_audit_logs_tenant_id_user_id_tenant_admins": "a"},
        ),
    ],
)
def test_foreign_keys_have_the_documented_on_delete_rules(raw_db, table, expected):
    # confdeltype: c = CASCADE, a = NO ACTION.
    rows = raw_db.execute(
        "SELECT conname, confdeltype FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass",
        [table],
    ).fetchall()
    assert {name: rule for name, rule in rows} == expected


def test_raw_db_is_autocommit_so_each_statement_stands_alone(raw_db):
    # A guard for this file's own assumption: a failed statement must not poison
    # the next one.
    with pytest.raises(psycopg.Error):
        insert_tenant(raw_db, "Bad Slug")
    insert_tenant(raw_db, "good-slug")
    assert count(raw_db, "tenants") == 1
