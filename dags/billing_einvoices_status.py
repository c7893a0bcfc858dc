"""
The Airflow DAG serving `billing_einvoices`: every 15 minutes, each e-invoice GİB has queued is asked for
its status through the integrator that carried it (one task per integrator, in its pool), until GİB's answer
is final: accepted (1300) or refused.

- **Refusals** reach finance with the integrator's own code and GİB's code and message; the invoice's number
  stays used (billing issues a new invoice).
- **Ledger**: each question is an attempt in `einvoice_attempts`; each invoice's state is in `einvoices`.
"""
from ledgerlink.spine import einvoice_status_dag

einvoice_status_dag("billing_einvoices_status", schedule="5,20,35,50 * * * *", doc_md=__doc__)
