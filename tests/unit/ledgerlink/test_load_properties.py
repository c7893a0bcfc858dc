"""Stateful property test of the SQL load path: load, crash anywhere, retry, replay, redeliver.

After every step each source key is in the target at most once; once a clean run settles, the target
equals the source, row for row, and the Decimal totals per currency and VAT rate are equal.
"""
from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from ledgerlink.billing.figures import invoice_line_figures
from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger
from ledgerlink.reconcile import compare
from sandbox.generator import mutate_billing
from tests.support.crashes import SimulatedCrash, seeded_billing
from tests.support.machines import RedeliveryMachine, settling_test_case



class LoadMachine(RedeliveryMachine):
    flow = flow

    def __init__(self):
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="ll-prop-"))
        self.monkey = pytest.MonkeyPatch()
        self.monkey.setenv("LEDGERLINK_HOME", str(self.folder / "home"))
        shutil.copy(seeded_billing(7, 12), self.folder / "billing.db")
        self.billing = sa.create_engine(f"sqlite:///{self.folder / 'billing.db'}")
        self.erp = sa.create_engine(f"sqlite:///{self.folder / 'erp.db'}")
        self.ledger = Ledger.migrated(f"sqlite:///{self.folder / 'ledger.db'}")
        self.runs = 0
        self.clock = datetime(2026, 11, 2, tzinfo=timezone.utc)
        self.old_metas: list[dict] = []

    def teardown(self):
        self.monkey.undo()
        self.billing.dispose()
        self.erp.dispose()
        self.ledger.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run_id(self) -> str:
        self.runs += 1
        return f"run{self.runs}"

    def _staged(self) -> dict:
        meta = flow.extract(self._run_id(), self.billing, self.ledger, chunk_rows=50)
        meta = flow.gate(meta, self.ledger)
        self.old_metas.append(meta)
        return meta

    def load(self, meta: dict) -> dict:
        return flow.load(meta, self.erp, self.ledger)

    @rule()
    def settle(self):
        meta = self.load(self._staged())
        flow.reconcile_and_report(meta, self.billing, self.erp, self.ledger)

    @rule(fraction=st.sampled_from([0.05, 0.3]), deleted=st.integers(0, 3), added=st.integers(0, 3))
    def change_source(self, fraction, deleted, added):
        self.clock += timedelta(hours=1)
        mutate_billing(self.folder / "billing.db", seed=self.runs, changed_fraction=fraction, deleted=deleted,
                       added=added, as_of=self.clock)

    @rule(where=st.sampled_from(["upsert:before", "upsert:after", "record_confirmed_lines:before",
                                 "record_confirmed_lines:after", "delete_keys:before", "delete_keys:after",
                                 "plan_chunk:after"]),
          nth=st.integers(1, 3), retry=st.booleans())
    def crash_during_load(self, where, nth, retry):
        """The load dies at a chosen point (the nth call of it); optionally Airflow retries the same task."""
        meta = self._staged()
        name, moment = where.split(":")
        calls = {"n": 0}
        targets = {"upsert": (flow, "upsert_frame"), "delete_keys": (flow, "delete_keys"),
                   "record_confirmed_lines": (self.ledger, "record_confirmed_lines"),
                   "plan_chunk": (self.ledger, "plan_chunk")}  # planned and sent in one statement
        owner, attribute = targets[name]
        real = getattr(owner, attribute)

        def crashing(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth and moment == "before":
                raise SimulatedCrash(where)
            result = real(*args, **kwargs)
            if calls["n"] == nth and moment == "after":
                raise SimulatedCrash(where)
            return result

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(owner, attribute, crashing)
            try:
                flow.load(meta, self.erp, self.ledger)
            except SimulatedCrash:
                pass
        if retry:
            flow.load(meta, self.erp, self.ledger)
        self.end_run(meta.run_id)

    @invariant()
    def each_key_at_most_once(self):
        erp_lines.ensure_table(self.erp)
        with self.erp.connect() as conn:
            doubled = conn.execute(sa.text(
                f"SELECT line_id FROM {erp_lines.TABLE} GROUP BY line_id HAVING count(*) > 1")).all()
        assert doubled == []

    def check_settled(self):
        self.settle()
        columns = [c for c in erp_lines.COLUMNS if c != "content_hash"]
        source = self._rows(self.folder / "billing.db",
                            f"SELECT {', '.join('i.' + c if c in ('customer_id', 'issue_date') else 'l.' + c for c in columns)} "
                            "FROM invoice_lines l JOIN invoices i ON i.invoice_id = l.invoice_id")
        target = self._rows(self.folder / "erp.db", f"SELECT {', '.join(columns)} FROM {erp_lines.TABLE}")
        assert source == target
        assert compare(flow.FLOW, invoice_line_figures(self.billing),
                       erp_lines.target_figures(self.erp)) == []

    @staticmethod
    def _rows(path: Path, sql: str) -> list[tuple]:
        with sqlite3.connect(path) as conn:
            return sorted(tuple(str(v) for v in row) for row in conn.execute(sql))


TestLoadProperties = settling_test_case(LoadMachine, max_examples=12)
