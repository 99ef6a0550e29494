"""Declarative base, shared column types and mixins for every model."""

import enum
import uuid
from datetime import datetime
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import DateTime, Enum, FetchedValue, ForeignKey, MetaData, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, registry

# Deterministic constraint names, so migrations can refer to them and
# autogenerate compares like with like.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        # timestamptz everywhere: a naive timestamp is a bug waiting for a DST change.
        type_annotation_map={
            datetime: DateTime(timezone=True),
            uuid.UUID: PG_UUID(as_uuid=True),
            dict[str, Any]: JSONB,
        },
    )


class ScopedBindSession(FlaskSession):
    """Picks the engine from the tenant scope (wafaa.tenancy.engine_for): the
    service's login role for requests, the schema owner for operators' work."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is not None:
            return bind
        from wafaa.tenancy import current_scope, engine_for

        return engine_for(current_scope())


# expire_on_commit=False: a request commits after its view returned the objects it
# changed; re-reading them would cost a transaction per write for nothing (the
# scoped session ends with the request).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False, "class_": ScopedBindSession})


def pg_enum(enum_class: type[enum.Enum], name: str):
    """A PostgreSQL enum type that stores the members' values ('owner', not 'OWNER')."""
    return Enum(
        enum_class,
        name=name,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class UUIDPrimaryKey:
    # Generated client-side so an object's id is known before the flush (the
    # audit log records it in the same flush); the server default covers rows
    # written by raw SQL.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4, server_default=func.gen_random_uuid())


class CreatedAt:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Timestamps(CreatedAt):
    # A trigger (see the initial migration) sets updated_at on every UPDATE, raw
    # SQL included; FetchedValue tells the ORM to read it back after an update.
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), server_onupdate=FetchedValue())

    __mapper_args__ = {"eager_defaults": True}


class TenantScoped:
    """Marks a model whose rows belong to one tenant.

    `wafaa.tenancy` adds `tenant_id = <current tenant>` to every ORM query of these
    models and stamps it on inserts; PostgreSQL row-level security enforces the
    same rule underneath.
    """

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        # With an `id`, the primary key is (tenant_id, id): the ids are unique on
        # their own, but on Citus a key must include the distribution column. The
        # ORM still knows a row by its id alone (mapper primary_key).
        return mapped_column(
            ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, primary_key=issubclass(cls, UUIDPrimaryKey)
        )


EMPTY_JSONB = text("'{}'::jsonb")
