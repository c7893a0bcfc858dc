"""The payment gate: what billing needs of a bank receipt from 1C before it may be matched to an invoice.

Blocking (nothing of the batch is applied, nothing acknowledged: 1C keeps the changes registered): a receipt
without its key, a key twice in one batch, a runaway batch. Held back for finance (the rest go on), for
receipts in 1C's books (posted, not marked for deletion): an amount that is not a positive exact amount in
kopecks/kuruş (a Decimal with at most two places), a currency billing does not know, no payment date, no
counterparty, control characters in the payment purpose. A receipt no longer in the books (unposted, marked for
deletion) carries no money to check: what it means for billing is the flow's decision, not the gate's.

The feed reader sets the columns: ``amount`` (1C's exact decimal text), ``currency`` (ISO 4217, empty when 1C's
currency is not one billing knows), ``paid_on`` (``YYYY-MM-DD``), ``counterparty_ref`` (1C's Ref_Key), ``posted``.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from ledgerlink.gates.model import Check, Suite
from ledgerlink.gates.rules import present, printable, text_or_none, volume_check

KNOWN_CURRENCIES = ["RUB", "TRY", "USD", "EUR"]
EMPTY_REF = "00000000-0000-0000-0000-000000000000"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def exact_minor(amount) -> int | None:
    """A positive amount with at most two decimal places as an integer of minor units; None otherwise."""
    text = text_or_none(amount)
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value <= 0:
        return None
    minor = value * 100
    return int(minor) if minor == minor.to_integral_value() else None


def _in_books(df: pd.DataFrame) -> np.ndarray:
    if "posted" not in df:
        return np.ones(len(df), dtype=bool)
    return df["posted"].astype("boolean").fillna(True).to_numpy(dtype=bool)


def derive(df: pd.DataFrame) -> dict:
    booked = _in_books(df)
    amounts_ok = np.array([exact_minor(a) is not None for a in df["amount"]], dtype=bool) if "amount" in df \
        else np.zeros(len(df), dtype=bool)
    currencies = df["currency"].astype("string") if "currency" in df else pd.Series([None] * len(df), dtype="string")
    dates = df["paid_on"].astype("string") if "paid_on" in df else pd.Series([None] * len(df), dtype="string")
    refs = df["counterparty_ref"].astype("string") if "counterparty_ref" in df else \
        pd.Series([None] * len(df), dtype="string")
    return {
        "payment_id_present": present(df, "payment_id"),
        "amount_positive_exact": ~booked | amounts_ok,
        "currency_known": ~booked | currencies.isin(KNOWN_CURRENCIES).fillna(False).to_numpy(dtype=bool),
        "paid_on_present": ~booked | dates.str.match(_DATE.pattern).fillna(False).to_numpy(dtype=bool),
        "counterparty_present": ~booked | (present(df, "counterparty_ref")
                                           & refs.ne(EMPTY_REF).fillna(False).to_numpy(dtype=bool)),
        "purpose_printable": printable(df, "purpose"),
    }


def suite(max_rows: int | None) -> Suite:
    def held(name: str, column: str) -> Check:
        return Check(name, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": [True]}, False)

    return Suite("payment", "payment_id", derive=derive, checks=(
        volume_check(max_rows),
        Check("payment_id present", "ExpectColumnValuesToBeInSet",
              {"column": "payment_id_present", "value_set": [True]}, True),
        Check("payment_id once in the batch", "ExpectColumnValuesToBeUnique", {"column": "payment_id"}, True),
        held("amount: a positive exact amount (at most two decimal places)", "amount_positive_exact"),
        held(f"currency: one billing knows ({', '.join(KNOWN_CURRENCIES)})", "currency_known"),
        held("paid_on: the receipt's date present", "paid_on_present"),
        held("counterparty reference present", "counterparty_present"),
        held("payment purpose has no control characters", "purpose_printable"),
    ))
