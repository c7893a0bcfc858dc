"""usage_files: every CDR file taken from the conference bridge, by content hash (issue 21).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("period", sa.String(7)),
        sa.Column("rows_loaded", sa.Integer, nullable=False),
        sa.Column("rows_held_back", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("duplicate_of", sa.String(255)),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_usage_files_flow_sha256", "usage_files", ["flow", "sha256"])
    op.create_index("ix_usage_files_flow_name", "usage_files", ["flow", "name"])


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
