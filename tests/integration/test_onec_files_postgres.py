"""The month-end file exchange on PostgreSQL: billing's closing documents read from a PostgreSQL billing (dates,
numerics and money as the server types them) and the message lifecycle on a PostgreSQL ledger (its bulk paths)."""
from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from ledgerlink.billing.closing import closing_documents
from ledgerlink.delivery import MessageDelivery
from ledgerlink.ledger import CREATE, PlannedChange
from ledgerlink.onec import enterprise_data as ed
from tests.support.pg_world import server, world  # noqa: F401

FLOW = "billing_invoices_to_onec_files"


def test_a_postgresql_billings_month_reads_as_documents_that_add_up(world):
    billing = world["billing"]
    with billing.connect() as conn:
        expected = dict(conn.execute(sa.text(
            "SELECT invoice_id, gross_minor FROM invoices WHERE status IN ('issued', 'paid', 'cancelled') "
            "AND issue_date >= '2026-11-01' AND issue_date < '2026-12-01'")).all())
    documents = list(closing_documents(billing, "2026-11"))
    assert expected and {d.invoice_id for d in documents} >= set(expected)
    for doc in documents:
        assert ed.problems(doc) == [], doc.invoice_id
        if doc.invoice_id in expected:
            assert doc.gross == Decimal(expected[doc.invoice_id]) / 100 and isinstance(doc.gross, Decimal)
        assert doc.issue_date[:4] == "2026" and len(doc.issue_date) == 10


def test_the_message_lifecycle_on_a_postgresql_ledger(world):
    ledger = world["ledger"]

    def run(run_id: str, keys: list[str], answer: int | None = None) -> tuple[int, list[str]]:
        ledger.start_run(run_id, FLOW)
        delivery = MessageDelivery(ledger, flow=FLOW, run_id=run_id, target="onec_files", entity="invoice")
        if answer is not None:
            delivery.acknowledge_up_to(answer)
        acknowledged = ledger.snapshot_hashes(FLOW, keys)
        to_send = delivery.open([PlannedChange(k, f"ref-{k}", "h1", CREATE) for k in keys
                                 if acknowledged.get(k) != "h1"])
        number = delivery.next_message_no()
        if to_send:
            delivery.send(number, to_send, lambda: None)
        ledger.finish_run(run_id, FLOW, "succeeded", {})
        return number, [c.source_key for c in to_send]

    keys = [f"IN{n:05d}" for n in range(3000)]  # above the ledger's bulk threshold
    assert run("r1", keys)[1] == keys
    assert run("r2", keys) == (2, keys), "unconfirmed: all again, under a new number"
    assert ledger.awaiting_acknowledgement(FLOW) == {2: 3000}
    assert run("r3", keys, answer=1) == (3, keys), "an answer to message 1 confirms nothing carried again in 2"
    assert run("r4", keys, answer=3) == (4, []), "confirmed: nothing again"
    assert ledger.awaiting_acknowledgement(FLOW) == {}
