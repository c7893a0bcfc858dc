"""Billing's issued invoices as whole documents (header, lines, the contract and tariffs they name), for targets
that take an invoice as one record (1C's sales documents).

Issued invoices only, as ``billing.einvoices`` reads them: a draft (the usage rating's, rewritten each night until
month-end issues it) is not yet an invoice and never travels; a cancelled one is not issued any more, so to
change tracking it is gone from billing (and its documents are unposted and marked for deletion in the target).
"""
from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

# The record's columns: the key, the fields the map gives the flow (hashed), then what is read alongside and not
# hashed: the contract's and tariffs' own data (reference data written before the documents), billing's line sums
# for the gate, and the watermark.
COLUMNS = ["invoice_id", "number", "customer_id", "contract_id", "issue_date", "currency", "net_minor", "vat_minor",
           "gross_minor", "lines", "contract", "tariffs", "contract_found", "contract_customer_id",
           "contract_currency", "line_count", "lines_net_minor", "lines_vat_minor", "lines_gross_minor",
           "updated_at"]
MONEY = ["net_minor", "vat_minor", "gross_minor", "line_count", "lines_net_minor", "lines_vat_minor",
         "lines_gross_minor"]
LINE_FIELDS = ["line_no", "tariff_id", "description", "quantity", "unit_price_minor", "net_minor", "vat_rate",
               "vat_minor"]
ISSUED = "i.status NOT IN ('cancelled', 'draft')"


def read_issued_invoices(engine: sa.Engine) -> pd.DataFrame:
    """One row per issued invoice; its lines as canonical JSON (``lines``: what the content hash covers), its
    contract and tariffs as JSON beside it."""
    headers_sql = f"""
        SELECT i.invoice_id, i.number, i.customer_id, i.contract_id, i.issue_date, i.currency, i.net_minor,
               i.vat_minor, i.gross_minor, i.updated_at, k.contract_id AS k_id, k.customer_id AS k_customer,
               k.number AS k_number, k.signed_on AS k_signed_on, k.currency AS k_currency
          FROM invoices i LEFT JOIN contracts k ON k.contract_id = i.contract_id
         WHERE {ISSUED}
         ORDER BY i.invoice_id"""
    lines_sql = f"""
        SELECT l.invoice_id, l.line_no, l.tariff_id, l.description, l.quantity, l.unit_price_minor, l.net_minor,
               l.vat_rate, l.vat_minor, l.gross_minor, t.name, t.unit, t.vat_rate AS t_vat_rate
          FROM invoice_lines l JOIN invoices i ON i.invoice_id = l.invoice_id
          LEFT JOIN tariffs t ON t.tariff_id = l.tariff_id
         WHERE {ISSUED}
         ORDER BY l.invoice_id, l.line_no"""
    with engine.connect() as conn:
        headers = conn.execute(sa.text(headers_sql)).mappings().all()
        lines: dict[str, list] = {}
        for row in conn.execute(sa.text(lines_sql)).mappings():
            lines.setdefault(row["invoice_id"], []).append(row)
    records = []
    for h in headers:
        own = lines.get(h["invoice_id"], [])
        tariffs = {l["tariff_id"]: {"tariff_id": l["tariff_id"], "name": l["name"] or l["tariff_id"],
                                    "unit": l["unit"], "vat_rate": l["t_vat_rate"]} for l in own}
        contract = ({"contract_id": h["k_id"], "customer_id": h["k_customer"], "number": h["k_number"],
                     "signed_on": h["k_signed_on"], "currency": h["k_currency"]} if h["k_id"] is not None else None)
        records.append({
            "invoice_id": h["invoice_id"], "number": h["number"], "customer_id": h["customer_id"],
            "contract_id": h["contract_id"], "issue_date": h["issue_date"], "currency": h["currency"],
            "net_minor": h["net_minor"], "vat_minor": h["vat_minor"], "gross_minor": h["gross_minor"],
            "lines": json.dumps([{name: _plain(l[name]) for name in LINE_FIELDS} for l in own], ensure_ascii=False,
                                sort_keys=True, separators=(",", ":")),
            "contract": json.dumps(contract, ensure_ascii=False),
            "tariffs": json.dumps(list(tariffs.values()), ensure_ascii=False),
            "contract_found": contract is not None,
            "contract_customer_id": h["k_customer"], "contract_currency": h["k_currency"],
            "line_count": len(own), "lines_net_minor": sum(_int(l["net_minor"]) for l in own),
            "lines_vat_minor": sum(_int(l["vat_minor"]) for l in own),
            "lines_gross_minor": sum(_int(l["gross_minor"]) for l in own),
            "updated_at": h["updated_at"],
        })
    frame = pd.DataFrame(records, columns=COLUMNS)
    for column in MONEY:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    frame["contract_found"] = frame["contract_found"].astype(bool)
    for column in set(COLUMNS) - set(MONEY) - {"contract_found"}:
        frame[column] = frame[column].astype("string")
    return frame


def _plain(value):
    """A line's value as the JSON text keeps it: integers as integers, the rest as text (never a float)."""
    if isinstance(value, int):
        return value
    return None if value is None else str(value)


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
