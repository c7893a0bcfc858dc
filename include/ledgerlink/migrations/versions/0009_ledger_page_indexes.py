"""Indexes the Exchange ledger page reads by (issue 23): "where is X" by key across flows (items and
held-back rows), the open items in order, and the runs newest first (and per day). Each answers a filtered page of a
ledger of 500,000 items from the index instead of a scan (bench/ledger_page.py measures it).

Revision ID: ledger_page_indexes
Revises: onec_documents_item_versions
"""
from alembic import op

revision = "ledger_page_indexes"
down_revision = "onec_documents_item_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # if_not_exists: a ledger a test or an old release built from the models may have them already
    op.create_index("ix_items_source_key", "items", ["source_key"], if_not_exists=True)
    op.create_index("ix_items_status_id", "items", ["status", "id"], if_not_exists=True)
    op.create_index("ix_quarantine_source_key", "quarantine", ["source_key"], if_not_exists=True)
    op.create_index("ix_runs_started_at", "runs", ["started_at"], if_not_exists=True)


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
