"""Incremental reads from billing: rows changed since a point, and every key (to see deletions)."""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

CUSTOMER_COLUMNS = ["customer_id", "legal_name", "country", "entity_kind", "tax_id", "kpp", "address", "city",
                    "email", "currency", "updated_at"]
INVOICE_LINE_COLUMNS = ["line_id", "invoice_id", "line_no", "customer_id", "issue_date", "tariff_id", "description",
                        "quantity", "unit_price_minor", "net_minor", "vat_rate", "vat_minor", "gross_minor",
                        "currency", "updated_at"]
INT_COLUMNS = {"line_no", "unit_price_minor", "net_minor", "vat_minor", "gross_minor"}


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows, columns=columns)
    for column in columns:
        df[column] = df[column].astype("int64" if column in INT_COLUMNS else "string")
    return df


def read_customers(engine: sa.Engine, changed_since: str | None) -> pd.DataFrame:
    sql = f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM customers"
    params = {}
    if changed_since:
        sql += " WHERE updated_at >= :since"
        params["since"] = changed_since
    with engine.connect() as conn:
        return _frame(conn.execute(sa.text(sql + " ORDER BY customer_id"), params).all(), CUSTOMER_COLUMNS)


def read_customer_keys(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT customer_id FROM customers")))


def read_invoice_lines(engine: sa.Engine, changed_since: str | None, chunk_rows: int = 200_000):
    """Invoice lines with their invoice's customer and date, in chunks (memory stays flat)."""
    columns = ", ".join(f"l.{c}" if c not in ("customer_id", "issue_date") else f"i.{c}" for c in INVOICE_LINE_COLUMNS)
    sql = f"SELECT {columns} FROM invoice_lines l JOIN invoices i ON i.invoice_id = l.invoice_id"
    params = {}
    if changed_since:
        sql += " WHERE l.updated_at >= :since"
        params["since"] = changed_since
    with engine.connect().execution_options(stream_results=True) as conn:
        result = conn.execute(sa.text(sql), params)
        while rows := result.fetchmany(chunk_rows):
            yield _frame(rows, INVOICE_LINE_COLUMNS)


def read_invoice_line_keys(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT line_id FROM invoice_lines")))
