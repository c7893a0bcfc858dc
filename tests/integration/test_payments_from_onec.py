"""1C bank receipts → billing payments against the 1C stand-in over HTTP (its exchange plan, its Atom change
selection, its bank statement import) and billing on SQLite (one case on PostgreSQL).

The statement is the sandbox's demo statement over this billing: four receipts that pay an open invoice in full
(three naming it, spelled three ways; one naming nothing), one short, one over, one naming two invoices, and one
from a payer billing does not know."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from ledgerlink.flows import payments_from_onec as flow
from ledgerlink.ledger import SUCCEEDED
from sandbox.generator import generate_billing
from sandbox.onec.bank import demo_statement
from tests.support.payments_world import PaymentsWorld, minor, payment_key

SEED, CUSTOMERS = 7, 80


@pytest.fixture
def billing_db(tmp_path):
    path = tmp_path / "billing.db"
    generate_billing(path, seed=SEED, customers=CUSTOMERS)
    return path


@pytest.fixture
def world(tmp_path, monkeypatch, billing_db):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    w = PaymentsWorld(tmp_path, f"sqlite:///{billing_db}").start()
    yield w
    w.close()


def _named_invoice(world: PaymentsWorld, line: dict) -> dict:
    """The open invoice a demo line was written against (the payer's only open one), before any run."""
    import sqlalchemy as sa

    with world.billing.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT i.invoice_id, i.number, i.gross_minor - COALESCE((SELECT SUM(p.amount_minor) FROM payments p "
            "WHERE p.invoice_id = i.invoice_id), 0) AS open_minor FROM invoices i JOIN customers c "
            "ON c.customer_id = i.customer_id WHERE c.tax_id = :inn AND i.status = 'issued' ORDER BY i.invoice_id"),
            {"inn": line["payer_inn"]}).mappings().all()
    return [dict(r) for r in rows if r["open_minor"] > 0][0]


def _expected(world: PaymentsWorld) -> dict[str, dict]:
    """Per demo line, the invoice it was written against, read before the flow runs."""
    return {line["id"]: _named_invoice(world, line) for line in world.statement if not line.get("new_payer")}


def _expect_outcomes(world: PaymentsWorld, summary, expected: dict[str, dict]) -> None:
    matched = world.lines("matched")
    payments = world.payments()
    assert set(payments) == {payment_key(line) for line in matched}
    for line in matched:
        invoice = expected[line["id"]]
        payment = payments[payment_key(line)]
        assert (payment["invoice_id"], payment["amount_minor"]) == (invoice["invoice_id"], minor(line["amount"]))
        assert payment["paid_on"] == line["date"]
    held = world.held()
    kinds = {key: row["row"]["decision"] for key, row in held.items()}
    assert kinds == {payment_key(world.line("partial")): "partial", payment_key(world.line("overpaid")): "overpaid",
                     payment_key(world.line("ambiguous")): "ambiguous",
                     payment_key(world.line("unknown")): "unmatched"}
    # Candidates named with their open amounts, never a guess.
    partial = held[payment_key(world.line("partial"))]
    invoice = expected[world.line("partial")["id"]]
    assert partial["row"]["candidates"][0]["number"] == invoice["number"]
    assert Decimal(partial["row"]["candidates"][0]["open"]) * 100 == invoice["open_minor"]
    assert invoice["number"] in partial["reasons"]
    ambiguous = held[payment_key(world.line("ambiguous"))]
    assert len(ambiguous["row"]["candidates"]) == 2
    assert all(c["number"] in world.line("ambiguous")["purpose"] for c in ambiguous["row"]["candidates"])
    assert summary.created == 4 and summary.quarantined == 4 and not summary.reconciliation


def _money_adds_up(world: PaymentsWorld, summary=None) -> None:
    """Money applied = money received - what is held back, per currency, to the kopek (in billing, and as the
    summary tells finance)."""
    currency = {"643": "RUB", "949": "TRY"}
    received, held = Counter(), Counter()
    held_keys = set(world.held())
    for line in world.statement:
        received[currency[line["currency"]]] += minor(line["amount"])
        if payment_key(line) in held_keys:
            held[currency[line["currency"]]] += minor(line["amount"])
    applied = Counter()
    for payment in world.payments().values():
        applied[payment["currency"]] += payment["amount_minor"]
    for code in received:
        assert applied[code] == received[code] - held[code], code
        if summary is not None:
            line = (f"money {code}: received {Decimal(received[code]) / 100:.2f} = applied "
                    f"{Decimal(applied[code]) / 100:.2f} + held back {Decimal(held[code]) / 100:.2f}")
            assert line in summary.text(), summary.text()


def test_each_receipt_ends_where_it_should_and_1c_hears_it_last(world):
    expected = _expected(world)
    summary = world.run("r1")
    _expect_outcomes(world, summary, expected)
    _money_adds_up(world, summary)
    for line in world.lines("matched"):
        assert world.invoice(expected[line["id"]]["invoice_id"])["status"] == "paid"
    assert world.pending_in_1c() == []  # acknowledged: nothing of it registered any more
    history = world.ledger.history(target="billing", flow=flow.FLOW)
    assert len(history) == 4 and {row["message_no"] for row in history} == {1}  # the 1C message they came in
    text = summary.text()
    assert "matched 4" in text and "partial 1" in text and "overpaid 1" in text and "ambiguous 1" in text
    assert "held back" in text and world.ledger.runs(flow.FLOW)[-1]["status"] == SUCCEEDED



def test_rerun_and_replay_apply_nothing_twice(world):
    world.run("r1")
    before_payments, before_held = world.payments(), world.held()
    again = world.run("r2")
    assert again.created == 0 and again.changes == 0
    # A replay: every receipt registered again in 1C (an accountant touched each comment) comes back through
    # SelectChanges: nothing is applied or held twice.
    for line in world.statement:
        world.edit_in_1c(line["id"], Комментарий="проверено")
    replay = world.run("r3")
    assert replay.created == 0 and replay.unchanged == len(world.statement)
    assert world.payments() == before_payments
    assert world.held().keys() == before_held.keys()
    assert len(world.ledger.quarantined(flow=flow.FLOW)) == 4
    assert world.pending_in_1c() == []


def test_a_crash_between_apply_and_acknowledge_reapplies_nothing(world):
    state = flow.extract("crashed", world.client, world.ledger)
    state = flow.gate(state, world.ledger)
    flow.load(state, world.billing, world.ledger)  # billing holds the payments; 1C was never told
    world.ledger.end_run_early("crashed", flow.FLOW, "abandoned", "killed before acknowledging")
    assert len(world.payments()) == 4 and len(world.pending_in_1c()) == len(world.statement)
    applied = world.payments()
    summary = world.run("after")
    assert summary.created == 0 and summary.quarantined == 0 and not summary.reconciliation
    assert world.payments() == applied
    assert len(world.ledger.quarantined(flow=flow.FLOW)) == 4  # held once, by the crashed run
    assert world.pending_in_1c() == []
    _money_adds_up(world)


def test_a_crash_after_billing_wrote_but_before_the_ledger_heard_reapplies_nothing(world):
    """Billing committed a payment, the answer was lost: the next run finds it there and counts it once."""
    from ledgerlink.billing import payments
    from ledgerlink.flows.payments_from_onec import PaymentsInBilling

    target = PaymentsInBilling(world.billing)
    records = flow.PAYMENT_FLOW.feed(world.client).read(None).records.to_dict("records")
    for decision in target.decide(records, []):
        if decision.action == "apply":
            decision.send()  # straight into billing, nothing in the ledger
    written = world.payments()
    assert len(written) == 4
    summary = world.run("r1")
    assert summary.created == 0 and summary.already_in_target == 4 and not summary.reconciliation
    assert world.payments() == written
    assert payments.payments_total(world.billing, written) == {
        p["currency"]: sum(q["amount_minor"] for q in written.values() if q["currency"] == p["currency"])
        for p in written.values()}


def test_changed_unposted_or_deleted_after_applied_are_held_for_finance_not_reversed(world):
    world.run("r1")
    applied = world.payments()
    changed, unposted, deleted = world.lines("matched")[:3]
    world.edit_in_1c(changed["id"], СуммаДокумента=str(Decimal(changed["amount"]) + 1))
    world.edit_in_1c(unposted["id"], DeletionMark=True)
    response = world.api("DELETE", f"Document_ПоступлениеНаРасчетныйСчет(guid'{payment_key(deleted)[3:]}')")
    assert response.status_code == 204, response.text
    partial = world.line("partial")  # held, never applied: deleting it leaves nothing to do
    assert world.api("DELETE", f"Document_ПоступлениеНаРасчетныйСчет(guid'{payment_key(partial)[3:]}')"
                     ).status_code == 204
    summary = world.run("r2")
    assert world.payments() == applied  # nothing reversed or changed in billing
    held = {q["source_key"]: q for q in world.ledger.quarantined(flow=flow.FLOW, run_id="r2")}
    assert set(held) == {payment_key(changed), payment_key(unposted), payment_key(deleted)}
    assert "changed in 1C after billing applied it" in held[payment_key(changed)]["reasons"]
    assert "marked for deletion" in held[payment_key(unposted)]["reasons"]
    assert "deleted in 1C after billing applied it" in held[payment_key(deleted)]["reasons"]
    assert summary.quarantined == 3 and summary.created == 0 and not summary.reconciliation
    assert world.pending_in_1c() == []
    # Told once: the same state again is not held again.
    assert world.run("r3").quarantined == 0


def test_by_date_where_no_exchange_plan_is_published(tmp_path, monkeypatch, billing_db):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    w = PaymentsWorld(tmp_path, f"sqlite:///{billing_db}").start(exchange_node=None)
    try:
        expected = _expected(w)
        summary = w.run("d1")
        _expect_outcomes(w, summary, expected)
        _money_adds_up(w)
        assert w.ledger.watermark(flow.FLOW, "receipt_date") == "2026-11-14"
        assert w.run("d2").created == 0 and len(w.ledger.quarantined(flow=flow.FLOW)) == 4
        # Marked for deletion after being applied: seen by date (a deletion outright would not be).
        w.edit_in_1c(w.lines("matched")[0]["id"], DeletionMark=True)
        assert w.run("d3").quarantined == 1
    finally:
        w.close()


def test_the_gate_holds_a_receipt_without_money_or_payer(world):
    """A receipt of zero, and one without its counterparty, posted by hand in 1C: held by the gate, named."""
    zero, nobody = world.lines("matched")[:2]
    world.edit_in_1c(zero["id"], СуммаДокумента="0")
    world.edit_in_1c(nobody["id"], Контрагент_Key="00000000-0000-0000-0000-000000000000")
    summary = world.run("g1")
    held = {q["source_key"]: q["reasons"] for q in world.ledger.quarantined(flow=flow.FLOW, run_id="g1")}
    assert "amount" in held[payment_key(zero)] and "counterparty" in held[payment_key(nobody)]
    assert summary.created == 2 and summary.quarantined == 6 and not summary.reconciliation


def test_billing_and_the_ledger_on_postgresql(tmp_path, monkeypatch, billing_db):
    from tests.support.pg import create_database, run_postgres

    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    statement = demo_statement(billing_db)  # the same seed gives the same rows on PostgreSQL
    with run_postgres(tmp_path / "pg") as server:
        billing, ledger = create_database(server, "billing"), create_database(server, "ledger")
        generate_billing(billing.url, seed=SEED, customers=CUSTOMERS)
        w = PaymentsWorld(tmp_path, billing.url, ledger_url=str(ledger.url), statement=statement).start()
        try:
            expected = _expected(w)
            summary = w.run("p1")
            _expect_outcomes(w, summary, expected)
            _money_adds_up(w)
            assert w.run("p2").created == 0
            # A replay through PostgreSQL's ledger paths: decided once, held once.
            for line in w.statement:
                w.edit_in_1c(line["id"], Комментарий="проверено")
            replay = w.run("p3")
            assert replay.created == 0 and replay.quarantined == 0 and replay.unchanged == len(statement)
        finally:
            w.close()


def test_1c_took_the_acknowledgement_but_its_answer_was_lost(world):
    """NotifyChangesReceived applied in 1C, the answer dropped: the step fails as transient, Airflow's retry of it
    acknowledges again (1C forgets nothing twice), and nothing in billing moves."""
    from ledgerlink.errors import TransientError
    from sandbox.httpbase import set_faults

    state = flow.load(flow.gate(flow.extract("r1", world.client, world.ledger), world.ledger), world.billing,
                      world.ledger)
    applied = world.payments()
    set_faults(world.server.url, [{"mode": "drop_after_apply", "count": 1, "methods": ["POST"],
                                   "path": "/demo/odata/standard.odata/NotifyChangesReceived"}])
    with pytest.raises(TransientError):
        flow.reconcile_and_report(state, world.client, world.billing, world.ledger)
    assert world.pending_in_1c() == []  # 1C did take it
    summary = flow.reconcile_and_report(state, world.client, world.billing, world.ledger)  # the task's retry
    assert not summary.reconciliation and world.payments() == applied
    assert world.run("r2").changes == 0
