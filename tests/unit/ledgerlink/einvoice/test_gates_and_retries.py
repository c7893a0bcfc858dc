"""The gates' rules for credit notes (IADE) and the e-invoice suite's held-back rules; Retry-After honoured."""
from __future__ import annotations

import pandas as pd
import pytest

from ledgerlink.errors import TransientError
from ledgerlink.gates.rules import INVOICE_IS_CREDIT_NOTE
from ledgerlink.gates.suites import einvoice, invoice_line
from ledgerlink.retrying import RetryBudget


def _lines(**extra) -> pd.DataFrame:
    frame = pd.DataFrame({
        "line_id": ["A-1", "B-1", "C-1"], "invoice_id": ["A", "B", "C"], "line_no": [1, 1, 1],
        "customer_id": ["C1"] * 3, "issue_date": ["2026-09-01"] * 3, "tariff_id": ["T"] * 3,
        "description": ["d"] * 3, "quantity": ["10"] * 3, "unit_price_minor": [100, 100, 100],
        "net_minor": [1000, -1000, -1000], "vat_rate": ["20"] * 3, "vat_minor": [200, -200, -200],
        "gross_minor": [1200, -1200, -1200], "currency": ["TRY"] * 3, "updated_at": ["2026-09-01T00:00:00+00:00"] * 3})
    for name, values in extra.items():
        frame[name] = values
    return frame


def test_the_invoice_line_gate_takes_negative_amounts_only_on_a_credit_note():
    assert list(invoice_line.derive(_lines())["net_sign_fits_invoice_type"]) == [True, False, False]
    derived = invoice_line.derive(_lines(**{INVOICE_IS_CREDIT_NOTE: [False, True, False]}))
    assert list(derived["net_sign_fits_invoice_type"]) == [True, True, False]
    assert list(derived["vat_matches_rate"]) == [True, True, True] and list(derived["gross_is_net_plus_vat"]) == [True] * 3


def test_the_einvoice_gate_holds_back_what_gib_would_refuse():
    frame = pd.DataFrame({
        "invoice_id": ["OK", "TAX", "SUM", "SIGN", "CN", "CN-NO-REF"], "customer_id": ["C"] * 6,
        "issue_date": ["2026-09-01"] * 6, "currency": ["TRY"] * 6, "updated_at": ["2026-09-01T00:00:00+00:00"] * 6,
        "legal_name": ["X A.Ş."] * 6, "address": ["Sk. 1"] * 6, "city": ["Ankara"] * 6,
        "tax_id": ["4549617050", "4549617051", "4549617050", "4549617050", "10000000146", "10000000146"],
        "net_minor": [100, 100, 100, 100, -100, -100], "vat_minor": [20, 20, 20, 20, -20, -20],
        "gross_minor": [120, 120, 121, 120, -120, -120],
        "lines_net_minor": [100, 100, 100, 100, -100, -100], "lines_vat_minor": [20, 20, 20, 20, -20, -20],
        "lines_gross_minor": [120, 120, 120, 120, -120, -120], "line_count": [1, 1, 1, 2, 1, 1],
        "negative_lines": [0, 0, 0, 1, 1, 1], "positive_lines": [1, 1, 1, 1, 0, 0],
        "credits_invoice_id": [None, None, None, None, "OK", None]})
    derived = einvoice.derive(frame)
    failing = {column: [k for k, ok in zip(frame["invoice_id"], derived[column]) if not ok]
               for column in ("tax_id_valid", "totals_add_up", "signs_agree_with_type",
                              "credit_note_names_its_invoice")}
    assert failing == {"tax_id_valid": ["TAX"], "totals_add_up": ["SUM"], "signs_agree_with_type": ["SIGN"],
                       "credit_note_names_its_invoice": ["CN-NO-REF"]}


def test_retry_after_is_waited_exactly_and_a_longer_one_ends_the_retries():
    waits, calls = [], []

    def limited():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("429", retry_after=7.5)
        return "done"

    assert RetryBudget(sleep=waits.append, max_wait=15).call("x", limited) == "done"
    assert waits == [7.5, 7.5]  # neither capped below what the server asked nor replaced by backoff
    with pytest.raises(TransientError) as error:
        RetryBudget(sleep=waits.append, max_wait=15).call("x", lambda: (_ for _ in ()).throw(
            TransientError("429", retry_after=60)))
    assert waits == [7.5, 7.5] and error.value.retry_after == 60
