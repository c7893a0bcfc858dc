"""Bank receipts matched to billing's invoices, and applied to billing's ``payments`` once.

Matching (:func:`match`) is pure and never guesses. In the order the receipts came in (date, then number), each
receipt is tried:

1. **By the invoice it names.** The payment purpose is searched for invoice numbers as billing prints them
   (``БЛ-000123``, ``LLK2026000000001``), tolerating what bank texts do to them: case, spaces or dashes inside
   (``бл 000123``, ``БЛ–000123``, ``LLK 2026 000000001``), Cyrillic letters that look Latin, a word glued before
   (``сч.БЛ-000123``), dates and amounts after. One invoice named: the receipt pays it if it is open, in the
   receipt's currency, of the receipt's customer, and the amount is exactly what is still open. Two or more
   named: ambiguous.
2. **Else by counterparty and exact amount**: the customer's open invoices in the currency whose open amount is
   exactly the receipt's; one is a match, two or more are ambiguous.

"Open" is what billing still waits for: an issued invoice's gross minus the payments billing has applied to it.
So the second half of an invoice paid in two parts is a match (it settles what is open), while a receipt for less
than the open amount is **partial** and one for more **over-paid**: both are held for finance, since which
invoice a short payment is meant for, and what to do with an excess (an advance, a refund, another invoice) is a
person's call. Everything held names its candidates: invoice numbers with their open amounts. A receipt decided
here consumes what it pays, so a second receipt for the same invoice in one batch is an over-payment, not a
second match.

Applying (:func:`apply_payment`) inserts the payment under a key derived from 1C's Ref_Key and marks the invoice
paid when its payments cover it, in one transaction; a payment billing holds already is left alone, so a rerun,
retry or replay applies nothing twice.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import sqlalchemy as sa

MATCHED, PARTIAL, OVERPAID, AMBIGUOUS, UNMATCHED = "matched", "partial", "overpaid", "ambiguous", "unmatched"
HELD_KINDS = (PARTIAL, OVERPAID, AMBIGUOUS, UNMATCHED)
OPEN_STATUS, PAID_STATUS = "issued", "paid"
SHOWN_CANDIDATES = 10
KEYS_PER_QUERY = 900  # SQLite binds at most 999 parameters in one statement

# Upper-case Cyrillic letters that look like Latin ones: a bank clerk's keyboard layout must not hide an invoice.
_LOOKALIKES = str.maketrans("АВЕКМНОРСТХУ", "ABEKMHOPCTXY")
# A reference as it appears in text: letters, then groups of digits joined by spaces, dashes, slashes or dots.
_DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2212_/."
_REFERENCE = re.compile(rf"(?P<letters>[A-ZА-ЯЁ]{{1,12}})(?P<digits>(?:[\s{_DASHES}]*\d+)+)")
_DIGIT_GROUP = re.compile(r"\d+")


def normalized_number(number: str) -> str:
    """An invoice number reduced to what survives a bank text: upper case, Latin lookalikes, letters and digits."""
    return re.sub(r"[^0-9A-ZА-ЯЁ]", "", str(number).upper().translate(_LOOKALIKES))


def referenced_numbers(purpose: str | None) -> list[list[str]]:
    """The invoice numbers a payment purpose may name, normalized: per reference found, its readings from the
    longest (every digit group) to the shortest, and with any word glued before the number's letters cut off."""
    if not purpose:
        return []
    text = str(purpose).upper().translate(_LOOKALIKES)
    found = []
    for reference in _REFERENCE.finditer(text):
        letters = reference["letters"]
        groups = _DIGIT_GROUP.findall(reference["digits"])
        readings = []
        for end in range(len(groups), 0, -1):
            digits = "".join(groups[:end])
            readings += [letters[start:] + digits for start in range(len(letters))]
        found.append(list(dict.fromkeys(readings)))
    return found


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    number: str
    customer_id: str
    currency: str
    gross_minor: int
    paid_minor: int
    status: str

    @property
    def open_minor(self) -> int:
        return self.gross_minor - self.paid_minor if self.status == OPEN_STATUS else 0

    @property
    def is_open(self) -> bool:
        return self.status == OPEN_STATUS and self.open_minor > 0


@dataclass(frozen=True)
class Receipt:
    payment_id: str
    customer_id: str | None  # the billing customer behind 1C's counterparty; None when it is none of billing's
    currency: str
    amount_minor: int
    paid_on: str
    purpose: str = ""


@dataclass
class Decision:
    payment_id: str
    kind: str  # MATCHED or one of HELD_KINDS
    reason: str = ""
    invoice: Invoice | None = None  # what a match pays
    candidates: list[dict] = field(default_factory=list)  # for finance: number, invoice_id, open amount, currency

    @property
    def held(self) -> bool:
        return self.kind in HELD_KINDS


def money(minor: int) -> str:
    """Minor units as exact major-unit text: 123456 -> '1234.56'."""
    return f"{Decimal(minor).scaleb(-2):.2f}"


def _candidate(invoice: Invoice, open_minor: int) -> dict:
    return {"number": invoice.number, "invoice_id": invoice.invoice_id, "customer_id": invoice.customer_id,
            "open": money(open_minor), "currency": invoice.currency, "status": invoice.status}


def match(receipts: Sequence[Receipt], invoices: Iterable[Invoice]) -> list[Decision]:
    """Decide every receipt (see the module doc); ``receipts`` in the order they are to be applied."""
    invoices = list(invoices)
    by_number: dict[str, list[Invoice]] = {}
    for invoice in invoices:
        for reading in {normalized_number(invoice.number), normalized_number(invoice.invoice_id)}:
            by_number.setdefault(reading, []).append(invoice)
    open_left = {i.invoice_id: i.open_minor for i in invoices}
    by_customer: dict[tuple[str, str], list[Invoice]] = {}
    for invoice in invoices:
        if invoice.is_open:
            by_customer.setdefault((invoice.customer_id, invoice.currency), []).append(invoice)

    decisions = []
    for receipt in receipts:
        decision = _decide(receipt, by_number, by_customer, open_left)
        if decision.kind == MATCHED:
            open_left[decision.invoice.invoice_id] -= receipt.amount_minor
        decisions.append(decision)
    return decisions


def _named_invoices(purpose: str, by_number: dict[str, list[Invoice]]) -> list[Invoice]:
    named: dict[str, Invoice] = {}
    for readings in referenced_numbers(purpose):
        for reading in readings:  # the longest reading that is an invoice wins
            if reading in by_number:
                for invoice in by_number[reading]:
                    named.setdefault(invoice.invoice_id, invoice)
                break
    return list(named.values())


def _decide(receipt: Receipt, by_number: dict[str, list[Invoice]],
            by_customer: dict[tuple[str, str], list[Invoice]], open_left: dict[str, int]) -> Decision:
    amount, key = receipt.amount_minor, receipt.payment_id
    named = _named_invoices(receipt.purpose, by_number)
    if len(named) > 1:
        return Decision(key, AMBIGUOUS, f"the purpose names {len(named)} invoices: which one it pays is for "
                                        f"finance to say", candidates=[_candidate(i, open_left[i.invoice_id])
                                                                       for i in named[:SHOWN_CANDIDATES]])
    if named:
        (invoice,) = named
        left = open_left[invoice.invoice_id]
        shown = [_candidate(invoice, left)]
        if invoice.currency != receipt.currency:
            return Decision(key, UNMATCHED, f"invoice {invoice.number} is in {invoice.currency}, the receipt in "
                                            f"{receipt.currency}", candidates=shown)
        if receipt.customer_id is not None and invoice.customer_id != receipt.customer_id:
            return Decision(key, UNMATCHED, f"invoice {invoice.number} is customer {invoice.customer_id}'s; the "
                                            f"payer is customer {receipt.customer_id}", candidates=shown)
        if receipt.customer_id is None:
            return Decision(key, UNMATCHED, f"the payer is not a billing customer, yet the purpose names invoice "
                                            f"{invoice.number} (customer {invoice.customer_id})", candidates=shown)
        if invoice.status != OPEN_STATUS:
            kind = OVERPAID if invoice.status == PAID_STATUS else UNMATCHED
            return Decision(key, kind, f"invoice {invoice.number} is {invoice.status} in billing, nothing is open "
                                       f"on it", candidates=shown)
        return _against_one(receipt, invoice, left, "named in the purpose", shown)

    if receipt.customer_id is None:
        return Decision(key, UNMATCHED, "the counterparty is not a billing customer and the purpose names no "
                                        "billing invoice")
    open_ones = [i for i in by_customer.get((receipt.customer_id, receipt.currency), ())
                 if open_left[i.invoice_id] > 0]
    shown = [_candidate(i, open_left[i.invoice_id]) for i in open_ones[:SHOWN_CANDIDATES]]
    exact = [i for i in open_ones if open_left[i.invoice_id] == amount]
    if len(exact) == 1:
        return Decision(key, MATCHED, "by counterparty and exact amount", invoice=exact[0])
    if len(exact) > 1:
        return Decision(key, AMBIGUOUS, f"{len(exact)} open invoices of customer {receipt.customer_id} are open for "
                                        f"exactly {money(amount)} {receipt.currency}",
                        candidates=[_candidate(i, amount) for i in exact[:SHOWN_CANDIDATES]])
    if len(open_ones) == 1:
        return _against_one(receipt, open_ones[0], open_left[open_ones[0].invoice_id],
                            "the customer's only open invoice", shown)
    if not open_ones:
        return Decision(key, UNMATCHED, f"customer {receipt.customer_id} has no open invoice in {receipt.currency} "
                                        f"and the purpose names none")
    return Decision(key, UNMATCHED, f"none of customer {receipt.customer_id}'s {len(open_ones)} open invoices is "
                                    f"open for exactly {money(amount)} {receipt.currency}, and the purpose names "
                                    f"none", candidates=shown)


def _against_one(receipt: Receipt, invoice: Invoice, left: int, how: str, shown: list[dict]) -> Decision:
    key, amount = receipt.payment_id, receipt.amount_minor
    if amount == left:
        return Decision(key, MATCHED, how, invoice=invoice)
    if left <= 0:
        return Decision(key, OVERPAID, f"invoice {invoice.number} ({how}) is already settled", candidates=shown)
    if amount < left:
        return Decision(key, PARTIAL, f"{money(amount)} {receipt.currency} is less than the {money(left)} open on "
                                      f"invoice {invoice.number} ({how})", candidates=shown)
    return Decision(key, OVERPAID, f"{money(amount)} {receipt.currency} is more than the {money(left)} open on "
                                   f"invoice {invoice.number} ({how}): {money(amount - left)} over", candidates=shown)


# billing's tables ---------------------------------------------------------------------------------------------
def read_invoices(engine: sa.Engine) -> list[Invoice]:
    """Billing's invoices (credit notes aside) with what its payments cover of each."""
    query = sa.text(
        "SELECT i.invoice_id, i.number, i.customer_id, i.currency, i.gross_minor, i.status, "
        "COALESCE(p.paid_minor, 0) FROM invoices i LEFT JOIN (SELECT invoice_id, SUM(amount_minor) AS paid_minor "
        "FROM payments GROUP BY invoice_id) p ON p.invoice_id = i.invoice_id WHERE i.gross_minor > 0 "
        "ORDER BY i.issue_date, i.invoice_id")
    with engine.connect() as conn:
        return [Invoice(invoice_id=r[0], number=r[1], customer_id=r[2], currency=r[3], gross_minor=int(r[4]),
                        status=r[5], paid_minor=int(r[6])) for r in conn.execute(query)]


def customer_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT customer_id FROM customers")))


def applied_payments(engine: sa.Engine, payment_ids: Iterable[str]) -> dict[str, dict]:
    """The payments billing holds under these ids, by id."""
    ids, found = list(dict.fromkeys(payment_ids)), {}
    with engine.connect() as conn:
        for start in range(0, len(ids), KEYS_PER_QUERY):
            chunk = ids[start:start + KEYS_PER_QUERY]
            rows = conn.execute(sa.text(
                "SELECT payment_id, customer_id, invoice_id, paid_on, amount_minor, currency, reference "
                "FROM payments WHERE payment_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": chunk})
            for row in rows.mappings():
                found[row["payment_id"]] = {**row, "amount_minor": int(row["amount_minor"])}
    return found


def apply_payment(engine: sa.Engine, *, payment_id: str, invoice: Invoice, amount_minor: int, paid_on: str,
                  currency: str, reference: str) -> bool:
    """Insert the payment and mark its invoice paid once its payments cover it, in one transaction. Returns
    False when billing holds the payment already (nothing is written then)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with engine.begin() as conn:
        inserted = conn.execute(sa.text(
            "INSERT INTO payments (payment_id, customer_id, invoice_id, paid_on, amount_minor, currency, reference, "
            "updated_at) SELECT :payment_id, :customer_id, :invoice_id, :paid_on, :amount_minor, :currency, "
            ":reference, :now WHERE NOT EXISTS (SELECT 1 FROM payments WHERE payment_id = :payment_id)"),
            {"payment_id": payment_id, "customer_id": invoice.customer_id, "invoice_id": invoice.invoice_id,
             "paid_on": paid_on, "amount_minor": amount_minor, "currency": currency, "reference": reference,
             "now": now}).rowcount
        if not inserted:
            return False
        conn.execute(sa.text(
            "UPDATE invoices SET status = :paid, updated_at = :now WHERE invoice_id = :invoice_id "
            "AND status = :open AND gross_minor <= (SELECT COALESCE(SUM(amount_minor), 0) FROM payments "
            "WHERE invoice_id = :invoice_id)"),
            {"paid": PAID_STATUS, "open": OPEN_STATUS, "now": now, "invoice_id": invoice.invoice_id})
    return True


def payments_total(engine: sa.Engine, payment_ids: Iterable[str]) -> dict[str, int]:
    """What billing holds under these payment ids, summed per currency (minor units)."""
    totals: dict[str, int] = {}
    for row in applied_payments(engine, payment_ids).values():
        totals[row["currency"]] = totals.get(row["currency"], 0) + row["amount_minor"]
    return totals
