"""Stateful property test of the 1C load path over HTTP: load, fail anywhere on the wire, retry, replay, redeliver.

The 1C stand-in misbehaves by fault rules (a dropped answer after the change was applied, a 503, a timeout).
After every step no customer appears twice among the counterparties in 1C; once a clean run settles, 1C
equals billing for every active customer, deleted customers are marked for deletion, and the ledger's
snapshot holds exactly the active counterparties.

The gate is bypassed (extract → load): it validates data, which this test does not vary, and costs time.
"""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from ledgerlink.errors import TransientError
from ledgerlink.flows import customers_to_onec as flow
from ledgerlink.onec import counterparties
from sandbox.generator import mutate_billing
from tests.support.crashes import seeded_billing
from tests.support.machines import RedeliveryMachine, settling_test_case
from tests.support.onec_flow import OneCWorld, content_differences

CLIENT_TIMEOUT = 0.3  # seconds; a "timeout" fault holds the answer for longer
FAULT_TIMEOUT = 0.8


class OneCLoadMachine(RedeliveryMachine):
    flow = flow
    honour_if_match = True  # as the guide says; the subclass below plays a base that ignores If-Match

    def __init__(self):
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="ll-onec-prop-"))
        self.monkey = pytest.MonkeyPatch()
        self.monkey.setenv("LEDGERLINK_HOME", str(self.folder / "home"))
        self.monkey.delenv("LEDGERLINK_LEDGER_URL", raising=False)
        shutil.copy(seeded_billing(7, 15), self.folder / "billing.db")
        self.world = OneCWorld(self.folder, self.folder / "billing.db", honour_if_match=self.honour_if_match).start()
        self.world.client.timeout = CLIENT_TIMEOUT
        self.ledger = self.world.ledger
        self.runs = 0
        self.added = 0
        self.clock = datetime(2026, 11, 16, tzinfo=timezone.utc)  # after everything generated
        self.old_metas: list[dict] = []

    def teardown(self):
        try:
            self.world.close()
        finally:
            self.monkey.undo()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _staged(self) -> dict:
        self.runs += 1
        meta = flow.gate(flow.extract(f"run{self.runs}", self.world.billing, self.world.ledger), self.world.ledger)
        self.old_metas.append(meta)
        return meta

    def load(self, meta: dict) -> dict:
        return flow.load(meta, self.world.client, self.world.ledger)

    @rule()
    def settle(self):
        meta = self.load(self._staged())
        flow.reconcile_and_report(meta, self.world.billing, self.world.client, self.world.ledger)

    @rule(fraction=st.sampled_from([0.1, 0.4]), deleted=st.integers(0, 2), added=st.integers(0, 2),
          renamed=st.booleans())
    def change_source(self, fraction, deleted, added, renamed):
        """A day in billing: new e-mails (mutate_billing), a rename, customers deleted and added."""
        self.clock += timedelta(hours=1)
        mutate_billing(self.folder / "billing.db", seed=self.runs, changed_fraction=fraction, as_of=self.clock)
        keys = sorted(self.world.customers())
        if renamed:
            self._rename(keys[(self.runs * 7) % len(keys)])
        for key in keys[1:1 + deleted]:  # the first one stays: new customers are copied from it
            self.world.sql("DELETE FROM customers WHERE customer_id = :key", key=key)
        for _ in range(added):
            self._add(like=keys[0])

    def _rename(self, key: str) -> None:
        self.world.sql("UPDATE customers SET legal_name = legal_name || ' +', updated_at = :at "
                       "WHERE customer_id = :key", at=self.clock.isoformat(), key=key)

    def _add(self, like: str) -> None:
        self.added += 1
        self.world.sql(
            "INSERT INTO customers SELECT :new, legal_name || ' (branch)', country, entity_kind, tax_id, kpp, "
            "address, city, email, currency, segment, :at, :at FROM customers WHERE customer_id = :like",
            new=f"N{self.added:05d}", at=self.clock.isoformat(), like=like)

    def _touch(self) -> None:
        self.clock += timedelta(minutes=10)
        keys = sorted(self.world.customers())
        self._rename(keys[-1])
        self._add(like=keys[0])

    @rule(mode=st.sampled_from(["drop_after_apply", "error", "timeout"]), method=st.sampled_from(["POST", "PATCH"]),
          count=st.integers(1, 2), retry=st.booleans())
    def crash_during_load(self, mode, method, count, retry):
        """1C misbehaves during the load; optionally Airflow retries the same task (which may fail again)."""
        self._touch()  # a batch with a create and an update in it, for the fault to hit
        meta = self._staged()
        fault = {"mode": mode, "count": count, "methods": [method]}
        fault.update({"error": {"status": 503}, "timeout": {"seconds": FAULT_TIMEOUT}}.get(mode, {}))
        self.world.faults([fault])
        try:
            for attempt in range(1 + retry):
                try:
                    flow.load(meta, self.world.client, self.world.ledger)
                    break
                except TransientError:
                    pass
        finally:
            self.world.faults([])
            self.end_run(meta.run_id)

    @invariant()
    def each_customer_at_most_once_in_1c(self):
        codes = Counter(row["Code"] for row in self.world.dump())
        assert [code for code, n in codes.items() if n > 1] == []

    def check_settled(self):
        self.settle()
        assert content_differences(self.world) == []
        customers = self.world.customers()
        objects = self.world.dump()
        assert sorted(o["Code"] for o in objects if not o["DeletionMark"]) == sorted(customers)
        for obj in objects:
            assert obj["Ref_Key"] == counterparties.ref_key(obj["Code"])
            if obj["Code"] not in customers:
                assert obj["DeletionMark"] is True, obj["Code"]
        snapshot = self.world.snapshot()
        assert len(snapshot) == sum(1 for o in objects if not o["DeletionMark"])
        assert set(snapshot) == set(customers)
        assert self.world.ledger.planned() == []  # nothing left open


class IgnoringIfMatchMachine(OneCLoadMachine):
    honour_if_match = False


TestOneCLoadProperties = settling_test_case(OneCLoadMachine, max_examples=10)
TestOneCLoadPropertiesIgnoringIfMatch = settling_test_case(IgnoringIfMatchMachine, max_examples=10)
