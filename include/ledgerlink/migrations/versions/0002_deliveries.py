"""deliveries: per-line history of chunked loads, append-only (the runner's version 2).

As schema 2 had it, under a BRIN index by chunk on PostgreSQL (0003 swaps it for B-trees).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from ledgerlink.migrations import record_legacy_version

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("chunk_item_id", sa.BigInteger, nullable=False),
        sa.Column("source_key", sa.String(200), nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("operation", sa.String(10), nullable=False),
    )
    op.create_index("ix_deliveries_chunk_item", "deliveries", ["chunk_item_id"], postgresql_using="brin")
    record_legacy_version(2, "deliveries: per-line history of chunked loads, append-only")


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
