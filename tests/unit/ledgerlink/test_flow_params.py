"""Trigger params (ledgerlink.flows.params) honoured by the framework: a dry run sends nothing, one customer sends
only that customer's records and deletes nothing, a date range only those lines, the watermark stays."""
from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.errors import ConfigurationError
from ledgerlink.flows import invoice_lines_to_erp as lines_flow
from ledgerlink.flows.params import RunParams
from ledgerlink.ledger import Ledger
from sandbox.generator import generate_billing
from tests.unit.ledgerlink.test_keyed_flow import world  # noqa: F401 - the keyed flow's world (a fixture)


def _run_keyed(world, run_id: str, params: RunParams):
    flow, ledger = world["flow"], world["ledger"]
    state = flow.extract(run_id, world["billing"], ledger, params)
    state = flow.gate(state, ledger)
    state = flow.load(state, None, ledger)
    return flow.reconcile_and_report(state, world["billing"], None, ledger)


def test_params_are_read_as_people_type_them():
    assert RunParams.of({"customer": " C00003 ", "from_date": "2026-11-01", "to_date": "", "dry_run": True}) == \
        RunParams(customer="C00003", from_date=__import__("datetime").date(2026, 11, 1), dry_run=True)
    assert not RunParams.of(None).partial and not RunParams.of({"customer": None}).partial
    with pytest.raises(ConfigurationError, match="from_date: '01.11.2026' is not a date"):
        RunParams.of({"from_date": "01.11.2026"})
    with pytest.raises(ConfigurationError, match="before"):
        RunParams.of({"from_date": "2026-11-02", "to_date": "2026-11-01"})


def test_a_dry_run_plans_and_sends_nothing(world):  # noqa: F811
    summary = _run_keyed(world, "dry", RunParams(dry_run=True))
    assert world["contacts"].writes == 0 and world["contacts"].rows == {}
    assert world["ledger"].items() == [], "nothing recorded as planned or sent"
    assert world["ledger"].watermark(world["flow"].id, "updated_at") is None
    assert summary.dry_run and summary.created == 8 and summary.sent == 8
    assert "would send: 8" in summary.text() and "dry run: nothing was sent" in summary.text()
    # The real run afterwards sends everything.
    real = _run_keyed(world, "real", RunParams())
    assert real.created == 8 and world["contacts"].writes == 8


def test_one_customer_travels_alone_and_nothing_else_is_deleted_or_compared(world):  # noqa: F811
    _run_keyed(world, "first", RunParams())
    with sqlite3.connect(world["db"]) as db:
        keys = [k for (k,) in db.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
        db.executemany("UPDATE customers SET email = 'changed-' || customer_id WHERE customer_id = ?",
                       [(k,) for k in keys[:3]])
    watermark = world["ledger"].watermark(world["flow"].id, "updated_at")
    summary = _run_keyed(world, "one", RunParams(customer=keys[1]))
    assert (summary.updated, summary.deleted, summary.reconciliation) == (1, 0, [])
    assert world["contacts"].rows[f"contact-{keys[1]}"]["email"] == f"changed-{keys[1]}"
    assert world["contacts"].rows[f"contact-{keys[0]}"]["email"] != f"changed-{keys[0]}", "only the one customer"
    assert all(row["active"] for row in world["contacts"].rows.values()), "nobody else marked deleted"
    assert world["ledger"].watermark(world["flow"].id, "updated_at") == watermark, "the watermark stays"
    rest = _run_keyed(world, "rest", RunParams())
    assert rest.updated == 2, "the next full run sends the other changes"


@pytest.fixture
def lines_world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    generate_billing(tmp_path / "billing.db", seed=5, customers=6)
    return {"billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "erp": sa.create_engine(f"sqlite:///{tmp_path / 'erp.db'}"), "ledger": Ledger.migrated(), "path": tmp_path}


def _run_lines(world, run_id: str, params: RunParams):
    state = lines_flow.extract(run_id, world["billing"], world["ledger"], params=params)
    state = lines_flow.gate(state, world["ledger"])
    state = lines_flow.load(state, world["erp"], world["ledger"])
    return lines_flow.reconcile_and_report(state, world["billing"], world["erp"], world["ledger"])


def test_invoice_lines_dry_run_writes_nothing_then_a_date_range_sends_only_its_lines(lines_world):
    world = lines_world
    dry = _run_lines(world, "dry", RunParams(dry_run=True))
    assert dry.dry_run and dry.created > 0 and dry.totals
    erp_lines.ensure_table(world["erp"])
    assert erp_lines.count_loaded(world["erp"]) == 0 and world["ledger"].chunks() == []

    with sqlite3.connect(world["path"] / "billing.db") as db:
        day = db.execute("SELECT min(issue_date) FROM invoices").fetchone()[0][:10]
        wanted = db.execute("SELECT count(*) FROM invoice_lines l JOIN invoices i USING (invoice_id) "
                            "WHERE substr(i.issue_date, 1, 10) = ?", (day,)).fetchone()[0]
        customer = db.execute("SELECT min(customer_id) FROM invoices").fetchone()[0]
        of_customer = db.execute("SELECT count(*) FROM invoice_lines l JOIN invoices i USING (invoice_id) "
                                 "WHERE i.customer_id = ?", (customer,)).fetchone()[0]
    day_run = _run_lines(world, "day", RunParams.of({"from_date": day, "to_date": day}))
    assert 0 < wanted == day_run.created == erp_lines.count_loaded(world["erp"])
    assert world["ledger"].watermark(lines_flow.FLOW, lines_flow.WATERMARK) is None, "the watermark stays"
    customer_run = _run_lines(world, "customer", RunParams(customer=customer))
    with world["erp"].connect() as conn:
        loaded_for_customer = conn.execute(sa.text("SELECT count(*) FROM billed_invoice_lines WHERE customer_id = :c"),
                                           {"c": customer}).scalar()
    assert loaded_for_customer == of_customer and customer_run.deleted == 0
    full = _run_lines(world, "full", RunParams())
    assert full.reconciliation == [] and erp_lines.count_loaded(world["erp"]) > wanted
