"""The gate of billing's issued invoices on their way to 1C as posted sales and VAT invoices. A blocking failure
(a key or amount missing) stops the run; an invoice 1C would refuse to post, or post wrong, is held back by its key
with the reason, and the others go on: totals that are not the sums of the lines, no lines, a contract missing or
of another customer or currency, a VAT rate without a value in 1C's enumeration, a line whose quantity is not a
number, an issue date that is not a calendar date."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from ledgerlink.gates.model import Check, Suite
from ledgerlink.gates.rules import common_checks, common_derived, volume_check

REQUIRED = ("invoice_id", "number", "customer_id", "contract_id", "issue_date", "currency", "net_minor",
            "vat_minor", "gross_minor")
TEXT = ("invoice_id", "number", "customer_id", "contract_id")
# The rates 1C's enumeration СтавкиНДС has a value for (percent; ledgerlink.onec.references.VAT_RATES maps them).
ONEC_VAT_RATES = {"0", "5", "7", "10", "18", "20", "22"}
CURRENCIES = ["RUB", "TRY", "USD", "EUR"]  # those with an ОКВ code the 1C connector knows


def _lines_sound(text) -> tuple[bool, bool]:
    """(every VAT rate known to 1C, every quantity a number) of one invoice's lines JSON."""
    try:
        lines = json.loads(str(text))
    except ValueError:
        return False, False
    rates = all(str(line.get("vat_rate")).strip() in ONEC_VAT_RATES for line in lines)
    try:
        quantities = all(Decimal(str(line.get("quantity"))).is_finite() for line in lines)
    except InvalidOperation:
        quantities = False
    return rates, quantities


def _calendar_date(value) -> bool:
    try:
        date.fromisoformat(str(value)[:10])
        return len(str(value)) == 10
    except ValueError:
        return False


def derive(df: pd.DataFrame) -> dict:
    out = common_derived(df, REQUIRED, TEXT)
    def ints(column):
        return df[column].fillna(0).to_numpy(dtype=np.int64)
    net, vat, gross = ints("net_minor"), ints("vat_minor"), ints("gross_minor")
    out["totals_add_up"] = ((net == ints("lines_net_minor")) & (vat == ints("lines_vat_minor"))
                            & (gross == ints("lines_gross_minor")) & (gross == net + vat))
    out["has_lines"] = ints("line_count") > 0
    out["contract_fits"] = (df["contract_found"].to_numpy(dtype=bool)
                            & (df["contract_customer_id"] == df["customer_id"]).fillna(False).to_numpy(dtype=bool)
                            & (df["contract_currency"] == df["currency"]).fillna(False).to_numpy(dtype=bool))
    sound = [_lines_sound(text) for text in df["lines"]]
    out["vat_rates_known"] = np.array([rates for rates, _ in sound], dtype=bool)
    out["quantities_numbers"] = np.array([quantities for _, quantities in sound], dtype=bool)
    out["issue_date_calendar"] = np.array([_calendar_date(v) for v in df["issue_date"]], dtype=bool)
    return out


def suite(max_rows: int | None) -> Suite:
    held_back = [
        ("billing's totals = the sums of its lines, gross = net + VAT", "totals_add_up"),
        ("the invoice has lines", "has_lines"),
        ("the invoice's contract exists, is the customer's and in the invoice's currency", "contract_fits"),
        ("every line's VAT rate has a value in 1C's enumeration СтавкиНДС", "vat_rates_known"),
        ("every line's quantity is a number", "quantities_numbers"),
        ("the issue date is a calendar date (YYYY-MM-DD)", "issue_date_calendar"),
    ]
    return Suite("onec_invoice", "invoice_id", derive=derive, checks=(
        volume_check(max_rows),
        *common_checks(REQUIRED, TEXT),
        Check("invoice id unique in billing", "ExpectColumnValuesToBeUnique", {"column": "invoice_id"}, False),
        *(Check(name, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": [True]}, False)
          for name, column in held_back),
        Check("currency known to the 1C connector (an ОКВ code)", "ExpectColumnValuesToBeInSet",
              {"column": "currency", "value_set": CURRENCIES}, False),
    ))
