"""
The Airflow DAG serving `billing_einvoices`: at 19:00 Istanbul (16:00 UTC) on working days, finance's
e-invoice summary of the day: how many invoices GİB accepted or still queues, which integrator carried them (and how many as the
fallback), each series' numbers checked gapless, and every refusal with the integrator's and GİB's codes.

- **Where**: the task's log, and `reports/einvoices/summary_<day>.xlsx` in the Ledgerlink home.
"""
from ledgerlink.spine import einvoice_summary_dag

einvoice_summary_dag("billing_einvoices_summary", schedule="0 16 * * 1-5", doc_md=__doc__)
