"""flow_leases: one run per flow at a time (the runner's version 4).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

from ledgerlink.migrations import record_legacy_version

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_leases",
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    record_legacy_version(4, "flow_leases: one run per flow at a time")


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
