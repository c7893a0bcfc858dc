"""
### Billing customers → 1C counterparties

Hourly. Reads customers changed in billing, checks them (Great Expectations gate), and creates or updates
`Catalog_Контрагенты` in 1C over OData. Customers removed from billing are marked for deletion in 1C.

- **Keys**: each counterparty's `Ref_Key` is derived from the billing key, so a rerun creates nothing new.
- **Gate**: bad keys, tax ids or currencies block the load; bad e-mails or addresses hold the row back.
- **Ledger**: every item sent is recorded; see `python -m ledgerlink history --target onec`.
- **Finance**: the `reconcile_and_report` log ends with the summary; the XLSX workbook path is in it.
"""
from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import Asset, dag, task

from ledgerlink.tasks import DEFAULT_ARGS, fail_fast_on_terminal

# Downstream DAGs can run when this table is loaded (schedule=[ONEC_COUNTERPARTIES]).
ONEC_COUNTERPARTIES = Asset(name="onec_counterparties", uri="onec://default/Catalog_Kontragenty")


@dag(
    dag_id="billing_customers_to_onec",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["ledgerlink", "billing", "1c", "customer"],
    doc_md=__doc__,
)
def billing_customers_to_onec():
    @task
    @fail_fast_on_terminal
    def extract() -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import customers_to_onec

        return customers_to_onec.extract(tasks.current_run_id(), tasks.billing_engine(), tasks.ledger())

    @task
    @fail_fast_on_terminal
    def gate(meta: dict) -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import customers_to_onec

        return customers_to_onec.gate(meta, tasks.ledger())

    @task(outlets=[ONEC_COUNTERPARTIES])
    @fail_fast_on_terminal
    def load(meta: dict) -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import customers_to_onec

        return customers_to_onec.load(meta, tasks.onec_client(), tasks.ledger())

    @task
    @fail_fast_on_terminal
    def reconcile_and_report(meta: dict) -> dict:
        from ledgerlink import tasks
        from ledgerlink.flows import customers_to_onec

        summary = customers_to_onec.reconcile_and_report(meta, tasks.billing_engine(), tasks.onec_client(), tasks.ledger())
        return summary.as_dict()

    reconcile_and_report(load(gate(extract())))


billing_customers_to_onec()
