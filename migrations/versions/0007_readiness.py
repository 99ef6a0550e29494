"""Readiness, and a login that does not deadlock against a tenant change.

GET /readyz compares the database's revision with the code's head, as the
service's own role, which otherwise reads no table of the owner's but its own.
Reading a revision number tells nothing about any tenant.

wafaa_login locks the admin's row FOR NO KEY UPDATE (wafaa/sql/login.sql), no
longer FOR UPDATE, which blocked the foreign-key checks of concurrent audit rows.
"""

from pathlib import Path

from alembic import op

from wafaa.schema_kit import app_role, apply_sql

revision = "0007_readiness"
down_revision = "0006_abuse_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"GRANT SELECT ON alembic_version TO {app_role()}")
    # CREATE OR REPLACE: the grants stay. As this revision wrote it (0008 changed it).
    apply_sql("0007_login.sql", directory=Path(__file__).with_name("sql"))


def downgrade() -> None:
    apply_sql("0006_login.sql", directory=Path(__file__).with_name("sql"))
    op.execute(f"REVOKE SELECT ON alembic_version FROM {app_role()}")
