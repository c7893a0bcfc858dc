"""Billing's invoices to Turkish customers, as e-invoices need them: each invoice with its customer's legal data
and its lines, read from one point in time (the cut-over to e-invoicing) on.

A credit note is an invoice whose amounts are negative; the invoice it returns is named by
``invoices.credits_invoice_id`` where billing has that column (a billing without it has no credit notes to
send: an IADE without the invoice it returns is held back by the gate).
"""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

HEADER_COLUMNS = ["invoice_id", "customer_id", "issue_date", "period_start", "period_end", "currency", "net_minor",
                  "vat_minor", "gross_minor", "status", "updated_at", "credits_invoice_id", "legal_name", "country",
                  "entity_kind", "tax_id", "address", "city", "line_count", "lines_net_minor", "lines_vat_minor",
                  "lines_gross_minor", "negative_lines", "positive_lines"]
LINE_COLUMNS = ["invoice_id", "line_no", "description", "quantity", "unit_price_minor", "net_minor", "vat_rate",
                "vat_minor", "gross_minor"]
MONEY = ["net_minor", "vat_minor", "gross_minor", "lines_net_minor", "lines_vat_minor", "lines_gross_minor",
         "line_count", "negative_lines", "positive_lines"]


def _credits_column(engine: sa.Engine) -> str:
    columns = {c["name"] for c in sa.inspect(engine).get_columns("invoices")}
    return "i.credits_invoice_id" if "credits_invoice_id" in columns else "NULL"


def read_einvoice_headers(engine: sa.Engine, issued_from: str, country: str = "TR") -> pd.DataFrame:
    """One row per invoice issued on or after ``issued_from`` to a customer in ``country``, with its customer and
    its lines' sums beside billing's own totals, for the gate to compare. Cancelled invoices are left out, and
    drafts: a draft (the usage rating's, rewritten each night until month-end issues it) is not yet an invoice,
    and one registered at GİB could never change again."""
    sql = f"""
        SELECT i.invoice_id, i.customer_id, i.issue_date, i.period_start, i.period_end, i.currency, i.net_minor,
               i.vat_minor, i.gross_minor, i.status, i.updated_at, {_credits_column(engine)} AS credits_invoice_id,
               c.legal_name, c.country, c.entity_kind, c.tax_id, c.address, c.city,
               COUNT(l.line_id) AS line_count, COALESCE(SUM(l.net_minor), 0) AS lines_net_minor,
               COALESCE(SUM(l.vat_minor), 0) AS lines_vat_minor, COALESCE(SUM(l.gross_minor), 0) AS lines_gross_minor,
               COALESCE(SUM(CASE WHEN l.net_minor < 0 OR l.vat_minor < 0 THEN 1 ELSE 0 END), 0) AS negative_lines,
               COALESCE(SUM(CASE WHEN l.net_minor > 0 OR l.vat_minor > 0 THEN 1 ELSE 0 END), 0) AS positive_lines
          FROM invoices i JOIN customers c ON c.customer_id = i.customer_id
          LEFT JOIN invoice_lines l ON l.invoice_id = i.invoice_id
         WHERE c.country = :country AND i.issue_date >= :issued_from AND i.status NOT IN ('cancelled', 'draft')
         GROUP BY i.invoice_id, i.customer_id, i.issue_date, i.period_start, i.period_end, i.currency, i.net_minor,
                  i.vat_minor, i.gross_minor, i.status, i.updated_at, credits_invoice_id, c.legal_name, c.country,
                  c.entity_kind, c.tax_id, c.address, c.city
         ORDER BY i.issue_date, i.invoice_id"""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"country": country, "issued_from": issued_from}).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=HEADER_COLUMNS)
    for column in MONEY:
        frame[column] = pd.to_numeric(frame[column]).astype("int64")
    for column in set(HEADER_COLUMNS) - set(MONEY):
        frame[column] = frame[column].astype("string")
    return frame


def read_einvoice_lines(engine: sa.Engine, invoice_ids: list[str]) -> dict[str, list[dict]]:
    """The lines of these invoices, by invoice, in line order."""
    lines: dict[str, list[dict]] = {}
    with engine.connect() as conn:
        for start in range(0, len(invoice_ids), 900):  # SQLite binds at most 999 parameters
            chunk = invoice_ids[start:start + 900]
            query = sa.text(f"SELECT {', '.join(LINE_COLUMNS)} FROM invoice_lines WHERE invoice_id IN :ids"
                            " ORDER BY invoice_id, line_no").bindparams(sa.bindparam("ids", expanding=True))
            for row in conn.execute(query, {"ids": chunk}):
                record = dict(zip(LINE_COLUMNS, row))
                lines.setdefault(record["invoice_id"], []).append(record)
    return lines


def read_invoice_dates(engine: sa.Engine, invoice_ids: list[str]) -> dict[str, str]:
    """Issue dates of invoices (those credit notes return)."""
    if not invoice_ids:
        return {}
    query = sa.text("SELECT invoice_id, issue_date FROM invoices WHERE invoice_id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True))
    with engine.connect() as conn:
        return {invoice_id: str(issued) for invoice_id, issued in conn.execute(query, {"ids": invoice_ids})}
