"""Matching bank receipts to billing invoices: the number in the purpose as bank texts spell it, then payer and exact
amount; partial, over-paid, ambiguous and unmatched named with their candidates, never guessed."""
from __future__ import annotations

import pytest

from ledgerlink.billing.payments import (AMBIGUOUS, MATCHED, OVERPAID, PARTIAL, UNMATCHED, Invoice, Receipt, match,
                                         normalized_number, referenced_numbers)
from ledgerlink.gates.suites.payment import exact_minor

INVOICES = [
    Invoice("IN1", "INV-2026-000123", "C1", "RUB", 122_000, 0, "issued"),
    Invoice("IN2", "БЛ-000012", "C1", "RUB", 50_000, 0, "issued"),
    Invoice("IN3", "БЛ-000124", "C2", "RUB", 10_000, 4_000, "issued"),  # paid 40.00 of 100.00 already
    Invoice("IN4", "LLK2026000000001", "C3", "TRY", 99_999, 0, "issued"),
    Invoice("IN5", "БЛ-000200", "C4", "RUB", 30_000, 30_000, "paid"),
    Invoice("IN6", "БЛ-000201", "C5", "RUB", 7_000, 0, "issued"),
    Invoice("IN7", "БЛ-000202", "C5", "RUB", 7_000, 0, "issued"),
    Invoice("IN8", "БЛ-000300", "C6", "RUB", 5_000, 0, "cancelled"),
]


def receipt(key, amount, purpose="", customer="C1", currency="RUB"):
    return Receipt(key, customer, currency, amount, "2026-11-14", purpose)


def one(r: Receipt):
    (decision,) = match([r], INVOICES)
    return decision


@pytest.mark.parametrize("purpose", [
    "Оплата по счету № INV-2026-000123 от 31.01.2026, в т.ч. НДС",
    "оплата по счету inv 2026 000123",
    "Оплата по сч.INV–2026–000123 (en dashes)",
    "Счет№INV2026000123 оплата",
    "ОПЛАТА ПО СЧЁТУ INV-2026/000123, НДС 22% - 220.00",
    "Оплата по счету INV-2026-000123 от 31.01.2026",
])
def test_the_invoice_number_is_found_however_the_bank_spells_it(purpose):
    decision = one(receipt("P1", 122_000, purpose))
    assert decision.kind == MATCHED and decision.invoice.invoice_id == "IN1"


def test_cyrillic_lookalikes_and_a_number_that_is_the_prefix_of_another():
    # "БЛ-000012" is a prefix of "БЛ-0000123": the longer number named must not pay the shorter invoice.
    assert one(receipt("P1", 50_000, "по счету БЛ-000012 от 01.11.2026")).invoice.invoice_id == "IN2"
    assert normalized_number("ВЛ-1") == normalized_number("BЛ-1")  # Cyrillic В typed for Latin B
    longer = one(receipt("P2", 1_000, "по счету БЛ-0000123"))
    assert longer.kind == UNMATCHED and "names none" in longer.reason


def test_partial_is_less_than_what_is_still_open_not_less_than_the_invoice():
    # IN3: 100.00, 40.00 paid: 60.00 settles it; 50.00 is partial; 100.00 is an over-payment.
    assert one(receipt("P1", 6_000, "счет БЛ-000124", customer="C2")).kind == MATCHED
    partial = one(receipt("P2", 5_000, "счет БЛ-000124", customer="C2"))
    assert partial.kind == PARTIAL and partial.candidates[0]["open"] == "60.00"
    assert partial.candidates[0]["number"] == "БЛ-000124"
    over = one(receipt("P3", 10_000, "счет БЛ-000124", customer="C2"))
    assert over.kind == OVERPAID and "40.00 over" in over.reason


def test_two_receipts_for_one_invoice_in_one_batch_do_not_both_pay_it():
    first, second = match([receipt("P1", 122_000, "INV-2026-000123"), receipt("P2", 122_000, "INV-2026-000123")],
                          INVOICES)
    assert first.kind == MATCHED and second.kind == OVERPAID


def test_by_payer_and_exact_amount_when_the_purpose_names_nothing():
    assert one(receipt("P1", 122_000, "за услуги связи")).invoice.invoice_id == "IN1"
    ambiguous = one(receipt("P2", 7_000, "за услуги", customer="C5"))
    assert ambiguous.kind == AMBIGUOUS and {c["number"] for c in ambiguous.candidates} == {"БЛ-000201", "БЛ-000202"}
    unmatched = one(receipt("P3", 1_234, "за услуги"))
    assert unmatched.kind == UNMATCHED and {c["number"] for c in unmatched.candidates} == {"INV-2026-000123",
                                                                                          "БЛ-000012"}


def test_what_is_held_and_why():
    assert one(receipt("P1", 172_000, "счета INV-2026-000123 и БЛ-000012")).kind == AMBIGUOUS
    assert one(receipt("P2", 30_000, "БЛ-000200", customer="C4")).kind == OVERPAID  # already paid
    assert one(receipt("P3", 5_000, "БЛ-000300", customer="C6")).kind == UNMATCHED  # cancelled
    wrong_payer = one(receipt("P4", 50_000, "БЛ-000012", customer="C9"))
    assert wrong_payer.kind == UNMATCHED and "C1" in wrong_payer.reason
    unknown = one(receipt("P5", 50_000, "БЛ-000012", customer=None))
    assert unknown.kind == UNMATCHED and unknown.candidates
    assert one(receipt("P6", 99_999, "LLK2026000000001", customer="C3", currency="RUB")).kind == UNMATCHED
    assert one(receipt("P7", 99_999, "Fatura LLK 2026 000000001", customer="C3", currency="TRY")).kind == MATCHED
    assert one(receipt("P8", 1_000, "за обучение", customer=None)).kind == UNMATCHED


def test_references_read_from_a_purpose():
    readings = referenced_numbers("Оплата по счету № INV-2026-000123 от 31.01.2026")
    assert readings[0][0] == "INV2026000123"
    assert referenced_numbers(None) == [] and referenced_numbers("без номера") == []


@pytest.mark.parametrize("amount,expected", [("1220.00", 122_000), ("0.01", 1), ("100", 10_000), ("1220.5", 122_050),
                                             ("0", None), ("-5.00", None), ("1.005", None), ("abc", None),
                                             (None, None), ("NaN", None), ("Infinity", None)])
def test_an_amount_is_a_positive_exact_amount_in_minor_units(amount, expected):
    assert exact_minor(amount) == expected
