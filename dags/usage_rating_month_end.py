"""
On the 1st of each month at 04:00 UTC, the month just closed is rated one last time and its draft invoices and
adjustments are issued (numbered in their country's series). Catch-up is on: a month whose run was missed is
closed by its own run later, in order.

- **After issue**: later usage for the month becomes an adjustment document, rated nightly.
- **Finance**: the task log ends with the documents written and issued, with net, VAT and gross per currency.
"""
from airflow.sdk import Asset

from ledgerlink.spine import rating_dag

BILLING_USAGE = Asset(name="billing_usage", uri="billing://default/usage")
BILLING_USAGE_INVOICES = Asset(name="billing_usage_invoices", uri="billing://default/invoices")

rating_dag("usage_rating_month_end", consumes=BILLING_USAGE, produces=BILLING_USAGE_INVOICES, month_end=True,
           doc_md=__doc__)
