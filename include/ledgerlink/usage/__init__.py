"""Conference-bridge usage: CDR files as their sources declare them, taken from SFTP once by their content, and
rated in ``Decimal`` with each contract's tariff.

The modules: ``profiles`` (what a file source declares: encoding, separator, decimals, dates, newline; reading a
file against it), ``intake`` (listing, settling, fetching, identifying and moving files on the server), and
``rating`` (a period's usage to invoice lines, pure). Billing's side (tariffs, usage rows, invoices) is
:mod:`ledgerlink.billing.usage`; the flows are :mod:`ledgerlink.flows.bridge_usage` and
:mod:`ledgerlink.flows.usage_rating`.
"""
from __future__ import annotations

from datetime import timedelta, timezone

# Billing closes its periods at midnight in Moscow and Istanbul, both UTC+3 all year round: a call belongs to
# the month it started in there, whatever offset the bridge wrote.
PERIOD_ZONE = timezone(timedelta(hours=3), "UTC+03")
