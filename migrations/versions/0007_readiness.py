"""Readiness: the service may read which migration the database is at.

GET /readyz compares the database's revision with the code's head, as the
service's own role, which otherwise reads no table of the owner's but its own.
Reading a revision number tells nothing about any tenant.
"""

from alembic import op

from wafaa.schema_kit import app_role

revision = "0007_readiness"
down_revision = "0006_abuse_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"GRANT SELECT ON alembic_version TO {app_role()}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT ON alembic_version FROM {app_role()}")
