"""
Hourly. Reads customers changed in billing, checks them (Great Expectations gate), and creates or updates
`Catalog_Контрагенты` in 1C over OData. Customers removed from billing are marked for deletion in 1C.

- **Keys**: each counterparty's `Ref_Key` is derived from the billing key, so a rerun creates nothing new.
- **Gate**: bad keys, tax ids or currencies block the load; a malformed KPP or a missing address holds the
  customer back (quarantine) while the rest go through.
- **Conflicts**: billing (relaying ERP's legal data) is the master; an edit made in 1C is reported by the
  reconciliation and overwritten on the next run.
- **Ledger**: every item sent is recorded; see `python -m ledgerlink history --target onec`.
- **Finance**: the `reconcile_and_report` log ends with the summary; the XLSX workbook path is in it.
"""
from airflow.sdk import Asset

from ledgerlink.spine import exchange_dag

ONEC_COUNTERPARTIES = Asset(name="onec_counterparties", uri="onec://default/Catalog_Kontragenty")

exchange_dag("billing_customers_to_onec", produces=ONEC_COUNTERPARTIES, doc_md=__doc__)  # schedule, tags, facts: the map
