"""runs, items, snapshots, watermarks, quarantine, validations (the runner's version 1).

The tables as schema 1 had them: the snapshot names its flow by name (0003 narrows it). The runner before
Alembic also created ``ledger_schema_version`` before its first migration; it is created here.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from ledgerlink.migrations import record_legacy_version

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ledger_schema_version",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("applied_at", _WHEN, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.Text),
    )
    op.create_table(
        "items",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("target", sa.String(50), nullable=False),
        sa.Column("entity", sa.String(50), nullable=False),
        sa.Column("source_key", sa.String(200), nullable=False),
        sa.Column("target_key", sa.String(200)),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("operation", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message_no", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("planned_at", _WHEN, nullable=False),
        sa.Column("sent_at", _WHEN),
        sa.Column("acknowledged_at", _WHEN),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_index("ix_items_run_id", "items", ["run_id"])
    op.create_index("ix_items_flow_key", "items", ["flow", "source_key"])
    op.create_index("ix_items_target_planned", "items", ["target", "planned_at"])
    # At most one open (planned or sent) item per record and flow: a retry continues it.
    op.create_index("ux_items_open", "items", ["flow", "source_key"], unique=True,
                    sqlite_where=sa.text("status IN ('planned', 'sent')"),
                    postgresql_where=sa.text("status IN ('planned', 'sent')"))
    op.create_table(
        "snapshots",
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("source_key", sa.String(200), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("target_key", sa.String(200)),
        sa.Column("acknowledged_at", _WHEN, nullable=False),
    )
    op.create_table(
        "watermarks",
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(100), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(50), nullable=False),
        sa.Column("source_key", sa.String(200), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("row", sa.Text, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_index("ix_quarantine_run_id", "quarantine", ["run_id"])
    op.create_table(
        "validations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(50), nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("failed_blocking", sa.Text, nullable=False),
        sa.Column("failed_warning", sa.Text, nullable=False),
        sa.Column("report_html", sa.Text, nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_index("ix_validations_run_id", "validations", ["run_id"])
    record_legacy_version(1, "runs, items, snapshots, watermarks, quarantine, validations")


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
