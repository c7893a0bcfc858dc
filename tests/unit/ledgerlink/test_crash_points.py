"""A load that dies at any point, then runs again, leaves the ERP exactly equal to billing.

The deterministic companion of the property test: every crash point is visited on every run.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from ledgerlink.billing.figures import invoice_line_figures
from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger
from ledgerlink.reconcile import compare
from sandbox.generator import generate_billing, mutate_billing
from tests.support.crashes import SimulatedCrash

# A chunk is planned and marked sent in one statement (plan_chunk): crashing after it is crashing after both.
CRASH_POINTS = [("ledger", "close_superseded_chunks", "after"), ("ledger", "plan_chunk", "after"),
                ("flow", "upsert_frame", "before"), ("flow", "upsert_frame", "after"),
                ("ledger", "record_confirmed_lines", "before"), ("ledger", "record_confirmed_lines", "after"),
                ("flow", "delete_keys", "before"), ("flow", "delete_keys", "after"),
                ("ledger", "set_watermark", "before")]


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    generate_billing(tmp_path / "billing.db", seed=3, customers=10)
    return {"billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "erp": sa.create_engine(f"sqlite:///{tmp_path / 'erp.db'}"),
            "ledger": Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}"), "path": tmp_path}


def _target_equals_source(world):
    columns = [c for c in erp_lines.COLUMNS if c != "content_hash"]
    select = ", ".join(f"i.{c}" if c in ("customer_id", "issue_date") else f"l.{c}" for c in columns)
    with sqlite3.connect(world["path"] / "billing.db") as db:
        source = sorted(db.execute(f"SELECT {select} FROM invoice_lines l JOIN invoices i USING (invoice_id)"))
    with sqlite3.connect(world["path"] / "erp.db") as db:
        target = sorted(db.execute(f"SELECT {', '.join(columns)} FROM {erp_lines.TABLE}"))
    assert source == target
    assert compare(flow.FLOW, invoice_line_figures(world["billing"]),
                   erp_lines.target_figures(world["erp"])) == []


@pytest.mark.parametrize("owner_name,attribute,moment", CRASH_POINTS)
@pytest.mark.parametrize("retry_same_task", [True, False], ids=["airflow-retry", "next-run"])
def test_crash_anywhere_then_run_again_converges(world, owner_name, attribute, moment, retry_same_task):
    flow.run_all("initial", world["billing"], world["erp"], world["ledger"], chunk_rows=40)
    mutate_billing(world["path"] / "billing.db", seed=1, changed_fraction=0.3, deleted=3, added=4,
                   as_of=datetime(2026, 11, 21, tzinfo=timezone.utc))
    meta = flow.gate(flow.extract("crashing", world["billing"], world["ledger"], chunk_rows=40), world["ledger"])
    owner = flow if owner_name == "flow" else world["ledger"]
    real = getattr(owner, attribute)

    def dying(*args, **kwargs):
        if moment == "before":
            raise SimulatedCrash(attribute)
        real(*args, **kwargs)
        raise SimulatedCrash(attribute)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(owner, attribute, dying)
        with pytest.raises(SimulatedCrash):
            flow.load(meta, world["erp"], world["ledger"])

    if retry_same_task:
        flow.reconcile_and_report(flow.load(meta, world["erp"], world["ledger"]), world["billing"], world["erp"],
                                  world["ledger"])
    else:
        # Airflow's failure callback closes the dead run and frees the flow for the next one.
        world["ledger"].end_run_early("crashing", flow.FLOW, "failed", f"crashed at {attribute}")
        flow.run_all("next", world["billing"], world["erp"], world["ledger"], chunk_rows=40)
    _target_equals_source(world)
    # Nothing left open, and a further run has nothing to send.
    assert world["ledger"].planned() == []
    assert flow.run_all("after", world["billing"], world["erp"], world["ledger"]).sent == 0
