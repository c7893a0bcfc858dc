"""What billing holds, as reconciliation counts it: its invoice lines' count and totals."""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ledgerlink.reconcile import Figures, sql_figures

INVOICE_LINES = "invoice_lines"
INVOICE_LINE_KEY = "line_id"


def invoice_line_figures(engine: sa.Engine, exclude_keys: Sequence[str] = ()) -> Figures:
    """Billing's invoice lines: count and exact totals per currency and VAT rate, less ``exclude_keys``."""
    return sql_figures(engine, INVOICE_LINES, exclude_keys, key=INVOICE_LINE_KEY)
