"""
Every 15 minutes in Turkish business hours (09:00-17:45 Istanbul), billing's invoices to Turkish customers
become GİB e-invoices (UBL-TR 1.2): e-Fatura for recipients on GİB's user list, e-Arşiv for everyone else;
SATIS, and IADE for credit notes.

- **Numbers**: each invoice's ETTN and number (series + year + 9 digits, gapless per series and year) are fixed
  in the ledger before the first send; a number is never used twice.
- **Routing**: `include/ledgerlink/einvoice_routing.yaml` names each series' primary and fallback integrator;
  each `send_*`/`failover_*` task runs in its integrator's pool.
- **Failover**: an integrator that does not answer is asked for the invoice's status first; only a definite
  "not received" lets the invoice go to the fallback, so GİB never sees an invoice twice.
- **Finance**: `reconcile_and_report` ends with the summary: at GİB, carried by whom, refused with the
  integrator's and GİB's codes; statuses are followed by `billing_einvoices_status`.
"""
from airflow.sdk import Asset

from ledgerlink.spine import einvoice_dispatch_dag

GIB_EINVOICES = Asset(name="gib_einvoices", uri="einvoice://gib/invoices")

einvoice_dispatch_dag(produces=GIB_EINVOICES, doc_md=__doc__)  # schedule, tags, facts: the map
