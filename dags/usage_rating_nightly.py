"""
Every night at 01:30 UTC, the usage taken from the bridge since the last rating is rated with each contract's
tariff into the period's invoice in billing (a draft until the period closes).

- **Rating**: per-minute prices in tiers, included minutes, a minimum charge, each call rounded up to the
  tariff's billing increment, money rounded as the tariff says, VAT per line half-up; all in exact decimals.
- **Issued invoices are never changed**: usage arriving for a period whose invoice is issued goes to an
  adjustment document (`UA-…`) for the difference.
- **Idempotent**: the whole period is rated again and only what differs is written; a rerun changes nothing.
"""
from airflow.sdk import Asset

from ledgerlink.spine import rating_dag

BILLING_USAGE = Asset(name="billing_usage", uri="billing://default/usage")
BILLING_USAGE_INVOICES = Asset(name="billing_usage_invoices", uri="billing://default/invoices")

rating_dag("usage_rating_nightly", consumes=BILLING_USAGE, produces=BILLING_USAGE_INVOICES, month_end=False,
           doc_md=__doc__)
