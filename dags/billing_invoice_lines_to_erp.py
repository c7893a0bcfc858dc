"""
Every night at 02:00 UTC, the invoice lines billing issued or changed are booked into the ERP's
`billed_invoice_lines`; lines removed from billing are removed there too.

- **Gate**: keys, amounts, per-line VAT (half-up), gross = net + VAT, currencies, rates and dates block the
  load; an empty description holds the line back.
- **Load**: in chunks, COPY + one upsert per chunk (PostgreSQL) or the same upsert on SQLite; a rerun
  changes nothing.
- **Finance**: `reconcile_and_report` ends with counts and totals per currency and VAT rate, billing
  against ERP, and the XLSX workbook's path.
"""
from airflow.sdk import Asset

from ledgerlink.spine import exchange_dag

ERP_BILLED_INVOICE_LINES = Asset(name="erp_billed_invoice_lines", uri="erp://default/billed_invoice_lines")

exchange_dag("billing_invoice_lines_to_erp", produces=ERP_BILLED_INVOICE_LINES, doc_md=__doc__)  # schedule, tags, facts: the map
