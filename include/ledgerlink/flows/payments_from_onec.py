"""1C bank receipts → billing payments, matched to invoices (flow ``onec_payments_to_billing``).

What is this flow's own: its spec (checked against the exchange map), 1C's receipt feed (``onec.receipts``), the
matching (``billing.payments``) and the target adapter below, which turns each receipt into a decision. The
lifecycle, with the source acknowledged only after billing holds what was applied, is
:class:`~ledgerlink.flows.feed.ChangeFeedFlow`'s.

A receipt 1C changes or deletes after billing applied it is **held for finance, never reversed here**: billing's
payment stays as it is, and the quarantine says what 1C now says (unposted, marked for deletion, deleted, or
another amount, currency or date) beside what billing applied. A payment is a fact billing may already have acted
on (a receipt printed, dunning stopped, a period closed); undoing it is an accountant's decision, and 1C gives no
reason with a change. An edit that leaves the money, date and payer as they were (a comment, the purpose) is
recognised as the payment billing holds and changes nothing.
"""
from __future__ import annotations

import functools

from ledgerlink import tasks
from ledgerlink.billing import payments
from ledgerlink.billing.payments import Invoice, Receipt
from ledgerlink.flows.feed import APPLY, HOLD, PASS, ChangeFeedFlow, Decision
from ledgerlink.flows.spec import declared
from ledgerlink.gates.suites.payment import exact_minor
from ledgerlink.loads.http import CREATED, UNCHANGED
from ledgerlink.onec import counterparties
from ledgerlink.onec.client import ODataClient
from ledgerlink.onec.receipts import ReceiptFeed

# The receipt's fields the mapping reads (the key aside): the map says the flow carries exactly these.
CARRIED = ("amount", "currency", "paid_on", "counterparty_ref", "purpose", "posted", "reference")
SPEC = declared("onec_payments_to_billing", entity="payment", source="onec", target="billing", carries=CARRIED)
CHANGED_AFTER_APPLIED, UNPOSTED_AFTER_APPLIED, DELETED_AFTER_APPLIED = (
    "changed_after_applied", "unposted_after_applied", "deleted_after_applied")
NOT_IN_BOOKS, GONE = "not_in_books", "deleted_never_applied"


def receipt_feed(client: ODataClient) -> ReceiptFeed:
    """The connection says how (its extra: ``exchange_node``, or none for by-date reads)."""
    return ReceiptFeed(client, exchange_node=client.exchange_node, exchange_plan=client.exchange_plan,
                       lookback_days=client.lookback_days)


def money_of(row: dict) -> tuple[str, int] | None:
    """A receipt's money as (currency, minor units), or None where it carries none that is readable."""
    minor = exact_minor(row.get("amount"))
    if row.get("posted") is False or minor is None or not row.get("currency"):
        return None
    return row["currency"], minor


def _candidates_text(candidates: list[dict]) -> str:
    return ", ".join(f"{c['number']} (open {c['open']} {c['currency']}, customer {c['customer_id']})"
                     for c in candidates)


class PaymentsInBilling:
    """Billing's ``payments`` as the target: each receipt decided (matched and applied, or held for finance)."""

    system = "billing"
    name = "billing payments"

    def __init__(self, engine):
        self.engine = engine

    def holds(self, keys: list[str]) -> dict[str, tuple[str, int]]:
        return {key: (row["currency"], row["amount_minor"])
                for key, row in payments.applied_payments(self.engine, keys).items()}

    def decide(self, records: list[dict], deleted: list[str]) -> list[Decision]:
        customer_by_ref = {counterparties.ref_key(c): c for c in payments.customer_ids(self.engine)}
        applied = payments.applied_payments(self.engine, [r["payment_id"] for r in records] + list(deleted))
        decisions: dict[str, Decision] = {}
        to_match: list[tuple[Receipt, dict]] = []
        for record in sorted(records, key=lambda r: (r["paid_on"] or "", r["number"] or "", r["payment_id"])):
            key, money = record["payment_id"], money_of(record)
            before = applied.get(key)
            if before is not None:
                decisions[key] = self._applied_before(record, before, money,
                                                      customer_by_ref.get(record["counterparty_ref"]))
            elif money is None:
                decisions[key] = Decision(key, PASS, NOT_IN_BOOKS, ["not posted, marked for deletion or not a "
                                                                    "customer's payment in 1C: no money for billing"])
            else:
                to_match.append((Receipt(payment_id=key, customer_id=customer_by_ref.get(record["counterparty_ref"]),
                                         currency=money[0], amount_minor=money[1], paid_on=record["paid_on"],
                                         purpose=record["purpose"] or ""), record))
        for key in deleted:
            before = applied.get(key)
            decisions[key] = Decision(key, PASS, GONE, ["deleted in 1C before billing applied anything of it"]) \
                if before is None else Decision(
                    key, HOLD, DELETED_AFTER_APPLIED,
                    [f"deleted in 1C after billing applied it: payment {key} of "
                     f"{payments.money(before['amount_minor'])} {before['currency']} to invoice {before['invoice_id']} "
                     f"stays in billing until finance reverses it"], row={"payment_id": key, "billing": before})
        if to_match:
            matched = payments.match([r for r, _ in to_match], payments.read_invoices(self.engine))
            for (receipt, record), outcome in zip(to_match, matched):
                decisions[receipt.payment_id] = self._matched(receipt, record, outcome)
        return list(decisions.values())

    def _matched(self, receipt: Receipt, record: dict, outcome: payments.Decision) -> Decision:
        money = (receipt.currency, receipt.amount_minor)
        if outcome.kind == payments.MATCHED:
            return Decision(receipt.payment_id, APPLY, outcome.kind, [outcome.reason], money=money,
                            target_key=receipt.payment_id,
                            send=functools.partial(self._apply, receipt, outcome.invoice, record["reference"]))
        # Finance finds the receipt by 1C's number and the bank's document; the key alone says nothing to them.
        payer = f"customer {receipt.customer_id}" if receipt.customer_id else "a payer billing does not know"
        reasons = [f"{outcome.kind}: {outcome.reason}",
                   f"1C receipt {record['number']} ({record['reference']}) of {payments.money(receipt.amount_minor)} "
                   f"{receipt.currency} from {payer}"]
        if outcome.candidates:
            reasons.append(f"candidates: {_candidates_text(outcome.candidates)}")
        row = {**record, "customer_id": receipt.customer_id, "decision": outcome.kind,
               "candidates": outcome.candidates}
        return Decision(receipt.payment_id, HOLD, outcome.kind, reasons, row=row, money=money)

    def _applied_before(self, record: dict, before: dict, money, customer_id: str | None) -> Decision:
        key = record["payment_id"]
        what = (f"billing applied it as payment {key} of {payments.money(before['amount_minor'])} {before['currency']} "
                f"on {before['paid_on']} to invoice {before['invoice_id']}")
        if money is None:
            return Decision(key, HOLD, UNPOSTED_AFTER_APPLIED,
                            [f"unposted, marked for deletion or no longer a customer's payment in 1C after {what}; "
                             f"billing keeps it until finance reverses it"], row={**record, "billing": before})
        same = (money == (before["currency"], before["amount_minor"]) and record["paid_on"] == before["paid_on"]
                and customer_id == before["customer_id"])
        if same:  # the payment billing holds (an earlier run applied it; the edit in 1C changed nothing of it)
            return Decision(key, APPLY, payments.MATCHED, ["applied before"], money=money, target_key=key,
                            send=lambda: UNCHANGED)
        return Decision(key, HOLD, CHANGED_AFTER_APPLIED,
                        [f"changed in 1C after {what}: 1C now says {payments.money(money[1])} {money[0]} on "
                         f"{record['paid_on']} from customer {customer_id or '(not a billing customer)'}; billing "
                         f"keeps its payment until finance adjusts it"], row={**record, "billing": before})

    def _apply(self, receipt: Receipt, invoice: Invoice, reference: str) -> str:
        written = payments.apply_payment(self.engine, payment_id=receipt.payment_id, invoice=invoice,
                                         amount_minor=receipt.amount_minor, paid_on=receipt.paid_on,
                                         currency=receipt.currency, reference=reference)
        return CREATED if written else UNCHANGED


PAYMENT_FLOW = ChangeFeedFlow(SPEC, feed=receipt_feed, target=PaymentsInBilling, money_of=money_of,
                              date_column="paid_on")
FLOW = SPEC.id
extract, gate, load = PAYMENT_FLOW.extract, PAYMENT_FLOW.gate, PAYMENT_FLOW.load
reconcile_and_report, run_all = PAYMENT_FLOW.reconcile_and_report, PAYMENT_FLOW.run_all
# The four Airflow tasks (ledgerlink.spine): 1C is the source, billing the target.
STEPS = PAYMENT_FLOW.steps(source=tasks.onec_client, target=tasks.billing_engine)
