"""items.target_version and items.request: what a keyed target answered to a write (issue 20).

``target_version``: the version the target gave the record when we last wrote it (1C's ``DataVersion``), so a
flow whose conflict policy is ``target_edits_held`` can tell an edit made in the target from its own last
write. ``request``: the request (an OData method and resource) that carried the item, for ``ledgerlink
history``. Both nullable: items written before this revision, and targets without versions, have none.

Revision ID: onec_documents_item_versions
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "onec_documents_item_versions"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("target_version", sa.String(64)))
        batch.add_column(sa.Column("request", sa.String(500)))


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
