"""Stateful property: whatever 1C's accountants do to the receipts (touch, change the amount, mark for deletion,
delete) and however runs end (whole, or killed before acknowledging, or with 1C's answer lost), billing never
holds a payment twice, never more on an invoice than it is worth from 1C, and money applied = money received less
what is held back. Against the 1C stand-in over HTTP and billing on SQLite."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledgerlink.flows import payments_from_onec as flow
from sandbox.generator import generate_billing
from tests.support.payments_world import PaymentsWorld, payment_key

RECEIPTS = "Document_ПоступлениеНаРасчетныйСчет"


class PaymentsMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="payments-machine-"))
        self._env = {"LEDGERLINK_HOME": str(self.folder / "home")}
        import os

        self._saved = {k: os.environ.get(k) for k in self._env}
        os.environ.update(self._env)
        generate_billing(self.folder / "billing.db", seed=7, customers=80)
        self.world = PaymentsWorld(self.folder, f"sqlite:///{self.folder / 'billing.db'}").start()
        self.runs = 0
        self.gone: set[str] = set()
        self.disturbed: set[str] = set()  # lines whose money, posting or existence an accountant changed

    def teardown(self):
        import os

        self.world.close()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run_id(self) -> str:
        self.runs += 1
        return f"run-{self.runs:03d}"

    def _live_lines(self):
        return [line for line in self.world.statement if line["id"] not in self.gone]

    @rule()
    def run(self):
        summary = self.world.run(self._run_id())
        assert not summary.reconciliation and summary.counts_add_up()
        assert self.world.pending_in_1c() == []
        # Nothing lost: every receipt that pays its invoice and that nobody disturbed is in billing now.
        payments = self.world.payments()
        for line in self.world.lines("matched"):
            if line["id"] not in self.disturbed:
                assert payment_key(line) in payments, line["id"]

    @rule()
    def killed_before_acknowledging(self):
        run_id = self._run_id()
        ledger = self.world.ledger
        flow.load(flow.gate(flow.extract(run_id, self.world.client, ledger), ledger), self.world.billing, ledger)
        ledger.end_run_early(run_id, flow.FLOW, "abandoned", "killed before acknowledging")

    @rule()
    def killed_before_billing(self):
        run_id = self._run_id()
        ledger = self.world.ledger
        flow.gate(flow.extract(run_id, self.world.client, ledger), ledger)
        ledger.end_run_early(run_id, flow.FLOW, "abandoned", "killed before writing to billing")

    @precondition(lambda self: self._live_lines())
    @rule(index=st.integers(0, 7), what=st.sampled_from(["touch", "amount", "mark", "delete"]))
    def accountant(self, index, what):
        lines = self._live_lines()
        line = lines[index % len(lines)]
        if what != "touch":
            self.disturbed.add(line["id"])
        if what == "touch":
            self.world.edit_in_1c(line["id"], Комментарий=f"touched {self.runs}")
        elif what == "amount":
            self.world.edit_in_1c(line["id"], СуммаДокумента="1.00")
        elif what == "mark":
            self.world.edit_in_1c(line["id"], DeletionMark=True)
        else:
            response = self.world.api("DELETE", f"{RECEIPTS}(guid'{payment_key(line)[3:]}')")
            assert response.status_code == 204
            self.gone.add(line["id"])

    @invariant()
    def billing_never_holds_a_receipt_twice_nor_overpays_an_invoice(self):
        with self.world.billing.connect() as conn:
            over = conn.execute(sa.text(
                "SELECT i.invoice_id FROM invoices i JOIN payments p ON p.invoice_id = i.invoice_id "
                "WHERE i.invoice_id IN (SELECT invoice_id FROM payments WHERE payment_id LIKE '1C-%') "
                "GROUP BY i.invoice_id, i.gross_minor HAVING SUM(p.amount_minor) > i.gross_minor")).all()
            keys = conn.execute(sa.text("SELECT payment_id FROM payments WHERE payment_id LIKE '1C-%'")).scalars()
            keys = list(keys)
        assert over == [] and len(keys) == len(set(keys))
        assert set(keys) <= {payment_key(line) for line in self.world.statement}

    @invariant()
    def what_is_applied_is_what_the_ledger_acknowledged(self):
        applied = set(self.world.payments())
        acknowledged = set(self.world.ledger.snapshot(flow.FLOW))
        assert acknowledged <= applied  # never acknowledged what billing does not hold


PaymentsMachine.TestCase.settings = settings(max_examples=6, stateful_step_count=8, deadline=None,
                                             suppress_health_check=list(HealthCheck))
test_payments_under_edits_crashes_and_replays = PaymentsMachine.TestCase
