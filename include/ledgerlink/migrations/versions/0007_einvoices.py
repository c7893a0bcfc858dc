"""einvoice_series, einvoices, einvoice_attempts: e-invoice numbers, ETTNs, carriers and every attempt.

Revision ID: 0007
Revises: 0006 (issue 22)
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "einvoice_series",
        sa.Column("series", sa.String(3), primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "einvoices",
        sa.Column("invoice_id", sa.String(200), primary_key=True),
        sa.Column("ettn", sa.String(36), nullable=False, unique=True),
        sa.Column("number", sa.String(16), nullable=False, unique=True),
        sa.Column("series", sa.String(3), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("document", sa.String(10), nullable=False),
        sa.Column("profile", sa.String(20), nullable=False),
        sa.Column("type_code", sa.String(20), nullable=False),
        sa.Column("recipient_id", sa.String(11), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payable", sa.Numeric(18, 2), nullable=False),
        sa.Column("primary_integrator", sa.String(50), nullable=False),
        sa.Column("fallback_integrator", sa.String(50)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("carrier", sa.String(50)),
        sa.Column("in_doubt_at", sa.String(50)),
        sa.Column("not_received_by", sa.String(200), nullable=False),
        sa.Column("gib_status", sa.Integer),
        sa.Column("integrator_code", sa.String(50)),
        sa.Column("message", sa.Text),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("numbered_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("final_at", _WHEN),
    )
    op.create_index("ix_einvoices_state", "einvoices", ["state"])
    op.create_table(
        "einvoice_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.String(200), nullable=False),
        sa.Column("integrator", sa.String(50), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("run_id", sa.String(250)),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("integrator_code", sa.String(50)),
        sa.Column("gib_status", sa.Integer),
        sa.Column("message", sa.Text),
    )
    op.create_index("ix_einvoice_attempts_invoice", "einvoice_attempts", ["invoice_id"])


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
