"""
### Billing invoice lines → ERP (nightly)

Every night at 02:00 UTC, the invoice lines billing issued or changed are booked into the ERP's
`billed_invoice_lines`; lines removed from billing are removed there too.

- **Gate**: keys, amounts, per-line VAT (half-up), gross = net + VAT, currencies, rates and dates block the
  load; a missing description holds the line back.
- **Load**: in chunks, COPY + one upsert per chunk (PostgreSQL) or the same upsert on SQLite; a rerun
  changes nothing.
- **Finance**: `reconcile_and_report` ends with counts and totals per currency and VAT rate, billing
  against ERP, and the XLSX workbook's path.
"""
from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import Asset, dag, task

from ledgerlink.tasks import DEFAULT_ARGS, fail_fast_on_terminal

# Downstream DAGs can run when this table is loaded (schedule=[ERP_BILLED_INVOICE_LINES]).
ERP_BILLED_INVOICE_LINES = Asset(name="erp_billed_invoice_lines", uri="erp://default/billed_invoice_lines")


@dag(
    dag_id="billing_invoice_lines_to_erp",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ledgerlink", "billing", "erp", "invoice_line", "nightly"],
    doc_md=__doc__,
)
def billing_invoice_lines_to_erp():
    @task
    @fail_fast_on_terminal
    def extract() -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import invoice_lines_to_erp

        return invoice_lines_to_erp.extract(tasks.current_run_id(), tasks.billing_engine(), tasks.ledger())

    @task
    @fail_fast_on_terminal
    def gate(meta: dict) -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import invoice_lines_to_erp

        return invoice_lines_to_erp.gate(meta, tasks.ledger())

    @task(outlets=[ERP_BILLED_INVOICE_LINES])
    @fail_fast_on_terminal
    def load(meta: dict) -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import invoice_lines_to_erp

        return invoice_lines_to_erp.load(meta, tasks.erp_engine(), tasks.ledger())

    @task
    @fail_fast_on_terminal
    def reconcile_and_report(meta: dict) -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import invoice_lines_to_erp

        return invoice_lines_to_erp.reconcile_and_report(
            meta, tasks.billing_engine(), tasks.erp_engine(), tasks.ledger()).as_dict()

    reconcile_and_report(load(gate(extract())))


billing_invoice_lines_to_erp()
