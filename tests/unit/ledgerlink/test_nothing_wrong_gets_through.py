"""Issue 18, the invoice-line flow (SQLite billing and ERP): bad data and unlucky timing that once got through.

Each test names the fault it covers; each fails on the code before the fix. The PostgreSQL variants of the
fingerprint and content checks are in tests/integration/test_postgres_loads.py.
"""
from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.errors import FlowBusy, GateFailed, ReconciliationError, RunSuperseded
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger
from sandbox.generator import generate_billing
from tests.support.loose_billing import drop_keys

LATER = "2026-11-25T10:00:00+00:00"


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")  # the failure callback's
    generate_billing(tmp_path / "billing.db", seed=11, customers=6)
    return {"billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "erp": sa.create_engine(f"sqlite:///{tmp_path / 'erp.db'}"),
            "ledger": Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}"), "path": tmp_path}


def billing_sql(world, sql: str, *params):
    with sqlite3.connect(world["path"] / "billing.db") as db:
        return db.execute(sql, params).fetchall()


def erp_sql(world, sql: str, *params):
    with sqlite3.connect(world["path"] / "erp.db") as db:
        return db.execute(sql, params).fetchall()


def first_line(world) -> dict:
    with sqlite3.connect(world["path"] / "billing.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM invoice_lines ORDER BY line_id LIMIT 1").fetchone())


def without_primary_keys(world, tables=("invoice_lines", "invoices")) -> None:
    drop_keys(world["path"] / "billing.db", tables)


def insert_line(world, row: dict) -> None:
    billing_sql(world, f"INSERT INTO invoice_lines ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                *row.values())


def run(world, run_id: str, **kwargs):
    return flow.run_all(run_id, world["billing"], world["erp"], world["ledger"], **kwargs)


def erp_equals_billing(world, except_keys=()) -> None:
    columns = [c for c in erp_lines.COLUMNS if c != "content_hash"]
    select = ", ".join(f"i.{c}" if c in ("customer_id", "issue_date") else f"l.{c}" for c in columns)
    source = {row[0]: row for row in billing_sql(world, f"SELECT {select} FROM invoice_lines l JOIN invoices i "
                                                        f"USING (invoice_id)") if row[0] not in except_keys}
    target = {row[0]: row for row in erp_sql(world, f"SELECT {', '.join(columns)} FROM {erp_lines.TABLE}")
              if row[0] not in except_keys}
    assert source == target


# 1. NULLs are gated, naming the row; nothing is half-loaded -------------------------------------------------
@pytest.mark.parametrize("column,check", [("net_minor", "net_minor present"), ("vat_rate", "vat_rate present"),
                                          ("quantity", "quantity present")])
def test_a_null_in_a_required_line_field_blocks_the_load_naming_the_row(world, column, check):
    without_primary_keys(world)
    key = first_line(world)["line_id"]
    billing_sql(world, f"UPDATE invoice_lines SET {column} = NULL WHERE line_id = ?", key)
    with pytest.raises(GateFailed) as caught:
        run(world, "nulls", chunk_rows=20)
    assert check in str(caught.value) and key in str(caught.value)
    assert erp_lines.count_loaded(world["erp"]) == 0, "no chunk was loaded before the gate said no"
    assert world["ledger"].runs()[-1]["status"] == "blocked"


def test_a_null_customer_on_an_invoice_is_a_gate_failure_not_an_erp_error(world):
    without_primary_keys(world)
    invoice = first_line(world)["invoice_id"]
    billing_sql(world, "UPDATE invoices SET customer_id = NULL WHERE invoice_id = ?", invoice)
    with pytest.raises(GateFailed) as caught:
        run(world, "null-customer", chunk_rows=20)
    assert "customer_id present" in str(caught.value) and invoice in str(caught.value)
    assert erp_lines.count_loaded(world["erp"]) == 0


def test_text_in_an_amount_column_is_named_not_a_type_error(world):
    key = first_line(world)["line_id"]
    billing_sql(world, "UPDATE invoice_lines SET vat_minor = '12,50' WHERE line_id = ?", key)
    with pytest.raises(GateFailed) as caught:
        run(world, "text-amount")
    assert "whole numbers" in str(caught.value) and "vat_minor" in str(caught.value) and key in str(caught.value)


# 3. Control characters are held back, naming the field ----------------------------------------------------
def test_a_nul_byte_in_a_description_holds_the_line_back(world):
    key = first_line(world)["line_id"]
    billing_sql(world, "UPDATE invoice_lines SET description = ? WHERE line_id = ?", "Conference\x00minutes", key)
    summary = run(world, "control")
    held = world["ledger"].quarantined(run_id="control")
    assert [(q["source_key"], q["reasons"]) for q in held] == [(key, "description has no control characters")]
    assert summary.quarantined == 1 and summary.reconciliation == []
    assert erp_sql(world, f"SELECT count(*) FROM {erp_lines.TABLE} WHERE instr(description, char(0)) > 0") \
        == [(0,)]
    # The workbook shows the held-back row with its control character escaped (XLSX cannot hold it raw).
    from openpyxl import load_workbook

    rows = list(load_workbook(summary.workbook)["Held back"].iter_rows(values_only=True))
    assert rows[1][rows[0].index("description")] == "Conference\\x00minutes"


# 4. Duplicate keys are held back, and the ERP never takes a twin's amounts ----------------------------------
def test_a_duplicate_key_is_held_back_and_heals_when_the_twin_goes(world):
    without_primary_keys(world)
    run(world, "first")
    original = first_line(world)
    twin = {**original, "net_minor": original["net_minor"] * 10, "vat_minor": original["vat_minor"] * 10,
            "gross_minor": original["gross_minor"] * 10, "updated_at": LATER}
    insert_line(world, twin)
    summary = run(world, "twin")
    held = world["ledger"].quarantined(run_id="twin")
    assert {q["source_key"] for q in held} == {original["line_id"]} and len(held) == 2, "both rows held back"
    assert all("line id unique in billing" in q["reasons"] for q in held)
    assert summary.reconciliation == [] and summary.counts_add_up()
    assert erp_sql(world, f"SELECT net_minor FROM {erp_lines.TABLE} WHERE line_id = ?", original["line_id"]) \
        == [(original["net_minor"],)], "the ERP keeps the last valid version"

    billing_sql(world, "DELETE FROM invoice_lines WHERE line_id = ? AND net_minor = ?", twin["line_id"],
                twin["net_minor"])
    healed = run(world, "twin-gone")
    assert healed.quarantined == 0 and healed.reconciliation == []
    erp_equals_billing(world)


# 5. Changes the watermark cannot see ------------------------------------------------------------------------
def test_a_line_without_its_invoice_is_held_back_by_key_not_dropped(world):
    without_primary_keys(world)
    run(world, "first")
    orphan = {**first_line(world), "line_id": "IN99999999-0001", "invoice_id": "IN99999999", "updated_at": LATER}
    insert_line(world, orphan)
    summary = run(world, "orphan")
    held = world["ledger"].quarantined(run_id="orphan")
    assert [(q["source_key"], q["reasons"]) for q in held] == [("IN99999999-0001",
                                                               "the line's invoice exists in billing")]
    assert summary.reconciliation == []
    # Held back again on the next night, though its updated_at is now behind the watermark.
    assert [q["source_key"] for q in world["ledger"].quarantined(run_id=run(world, "orphan-2").run_id)] \
        == ["IN99999999-0001"]


def test_an_edit_that_did_not_move_updated_at_is_found_and_sent(world):
    run(world, "first")
    key = first_line(world)["line_id"]
    billing_sql(world, "UPDATE invoice_lines SET description = 'corrected silently' WHERE line_id = ?", key)
    summary = run(world, "silent")
    assert summary.updated == 1 and summary.reconciliation == []
    assert erp_sql(world, f"SELECT description FROM {erp_lines.TABLE} WHERE line_id = ?", key) \
        == [("corrected silently",)]


def test_a_description_changed_in_the_erp_fails_reconciliation_naming_the_line(world):
    run(world, "first")
    key = first_line(world)["line_id"]
    erp_sql(world, f"UPDATE {erp_lines.TABLE} SET description = 'edited in the ERP' WHERE line_id = ?", key)
    with pytest.raises(ReconciliationError) as caught:
        run(world, "drift")
    assert "1 line(s) differ" in str(caught.value) and key in str(caught.value)
    assert world["ledger"].runs()[-1]["status"] == "failed"
    # Billing is the master (the map's policy): the next run puts billing's line back.
    repaired = run(world, "repair")
    assert repaired.reconciliation == [] and repaired.created == 1
    erp_equals_billing(world)


# 6. One run per flow at a time ------------------------------------------------------------------------------
def test_a_second_run_at_once_stops_before_changing_anything(world):
    first = flow.extract("scheduled", world["billing"], world["ledger"])
    with pytest.raises(FlowBusy) as caught:
        flow.extract("manual", world["billing"], world["ledger"])
    assert "scheduled" in str(caught.value)
    flow.reconcile_and_report(flow.load(flow.gate(first, world["ledger"]), world["erp"], world["ledger"]),
                              world["billing"], world["erp"], world["ledger"])
    assert run(world, "manual").sent == 0, "once the first run ended, the next one runs (and has nothing to do)"
    deliveries = world["ledger"].deliveries(flow=flow.FLOW)
    assert len(deliveries) == len({d["source_key"] for d in deliveries}), "no line delivered twice"
    assert [r["status"] for r in world["ledger"].runs()] == ["succeeded", "succeeded"]


def test_a_run_replayed_while_another_runs_cannot_load(world):
    old = flow.gate(flow.extract("old", world["billing"], world["ledger"]), world["ledger"])
    world["ledger"].end_run_early("old", flow.FLOW, "failed", "its reconcile task was cleared")
    flow.extract("new", world["billing"], world["ledger"])
    with pytest.raises(RunSuperseded):
        flow.load(old, world["erp"], world["ledger"])
    assert erp_lines.count_loaded(world["erp"]) == 0


def test_an_old_run_replayed_after_a_newer_one_succeeded_changes_nothing(world):
    """Found in review: the replay brought the old description back and moved the watermark backwards."""
    run(world, "first")
    key = first_line(world)["line_id"]
    billing_sql(world, "UPDATE invoice_lines SET description = 'old text', updated_at = ? WHERE line_id = ?",
                LATER, key)
    old = flow.gate(flow.extract("old", world["billing"], world["ledger"]), world["ledger"])
    world["ledger"].end_run_early("old", flow.FLOW, "failed", "its load task failed")
    billing_sql(world, "UPDATE invoice_lines SET description = 'new text', updated_at = ? WHERE line_id = ?",
                "2026-11-26T10:00:00+00:00", key)
    run(world, "newer")
    watermark = world["ledger"].watermark(flow.FLOW, "updated_at")
    with pytest.raises(RunSuperseded):
        flow.load(old, world["erp"], world["ledger"])
    assert erp_sql(world, f"SELECT description FROM {erp_lines.TABLE} WHERE line_id = ?", key) == [("new text",)]
    assert world["ledger"].watermark(flow.FLOW, "updated_at") == watermark
    assert run(world, "after").reconciliation == [], "the flow is not left locked"


# 9. Every run ends with a status ------------------------------------------------------------------------------
def test_a_blocked_gate_and_a_failed_task_end_the_run(world):
    from ledgerlink.tasks import close_run_on_failure

    key = first_line(world)["line_id"]
    billing_sql(world, "UPDATE invoice_lines SET gross_minor = gross_minor + 1 WHERE line_id = ?", key)
    with pytest.raises(GateFailed):
        run(world, "blocked")
    assert world["ledger"].runs()[-1]["status"] == "blocked"
    billing_sql(world, "UPDATE invoice_lines SET gross_minor = gross_minor - 1 WHERE line_id = ?", key)

    flow.extract("crashed", world["billing"], world["ledger"])  # then its worker died
    close_run_on_failure(flow.FLOW)({"run_id": "crashed", "exception": RuntimeError("worker lost")})
    crashed = world["ledger"].runs()[-1]
    assert crashed["status"] == "failed" and "worker lost" in crashed["summary"]
    assert run(world, "after").reconciliation == [], "the lease was released with it"


def test_a_run_left_running_by_a_killed_worker_is_closed_when_the_lease_lapses(world):
    from datetime import timedelta

    flow.extract("killed", world["billing"], world["ledger"])
    world["ledger"].hold_lease(flow.FLOW, "killed", lease_for=timedelta(seconds=-1))  # as if hours went by
    run(world, "next")
    assert [(r["run_id"], r["status"]) for r in world["ledger"].runs()] == [("killed", "abandoned"),
                                                                            ("next", "succeeded")]


# The customer flow's gate (extract and gate need billing and the ledger only) ---------------------------------
def customers_gated(world, run_id: str = "customers"):
    from ledgerlink.flows import customers_to_onec

    return customers_to_onec.gate(customers_to_onec.extract(run_id, world["billing"], world["ledger"]),
                                  world["ledger"])


def a_customer(world, country: str = "TR") -> dict:
    with sqlite3.connect(world["path"] / "billing.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM customers WHERE country = ? ORDER BY customer_id LIMIT 1",
                               (country,)).fetchone())


def test_a_null_tax_id_is_a_gate_failure_naming_the_customer_not_a_type_error(world):
    """Was: TypeError: boolean value of NA is ambiguous, in the tax-id check, retried three times."""
    without_primary_keys(world, ["customers"])
    key = a_customer(world)["customer_id"]
    billing_sql(world, "UPDATE customers SET tax_id = NULL WHERE customer_id = ?", key)
    with pytest.raises(GateFailed) as caught:
        customers_gated(world)
    assert "tax_id present" in str(caught.value) and key in str(caught.value)
    assert world["ledger"].runs()[-1]["status"] == "blocked"


def test_a_valid_tax_id_with_spaces_is_refused_not_compacted(world):
    customer = a_customer(world)
    spaced = f" {customer['tax_id'][:4]} {customer['tax_id'][4:]} "
    billing_sql(world, "UPDATE customers SET tax_id = ? WHERE customer_id = ?", spaced, customer["customer_id"])
    with pytest.raises(GateFailed) as caught:
        customers_gated(world)
    assert "tax id stored in its canonical form" in str(caught.value)
    assert "tax id check digits valid" not in str(caught.value), "the digits are valid: only the form is wrong"


def test_a_control_character_in_a_name_holds_the_customer_back(world):
    key = a_customer(world)["customer_id"]
    billing_sql(world, "UPDATE customers SET legal_name = legal_name || ? WHERE customer_id = ?", "\x00\x1b", key)
    meta = customers_gated(world)
    assert meta.quarantined == 1
    assert [(q["source_key"], q["reasons"]) for q in world["ledger"].quarantined(run_id="customers")] == [
        (key, "legal_name has no control characters")]


def test_a_customer_key_held_twice_is_held_back_whole(world):
    without_primary_keys(world, ["customers"])
    key = a_customer(world)["customer_id"]
    billing_sql(world, "INSERT INTO customers SELECT * FROM customers WHERE customer_id = ?", key)
    billing_sql(world, "UPDATE customers SET legal_name = 'Twin Ltd' WHERE rowid = (SELECT max(rowid) FROM customers)")
    meta = customers_gated(world)
    held = world["ledger"].quarantined(run_id="customers")
    assert [q["source_key"] for q in held] == [key, key] and meta.quarantined == 2
    assert all(q["reasons"] == "customer id unique in billing" for q in held)


def test_an_invoice_held_twice_holds_its_lines_back(world):
    """Found in review: with the invoice header doubled (another customer), the ERP swapped customers nightly."""
    without_primary_keys(world)
    run(world, "first")
    invoice = first_line(world)["invoice_id"]
    lines = {k for (k,) in billing_sql(world, "SELECT line_id FROM invoice_lines WHERE invoice_id = ?", invoice)}
    billing_sql(world, "INSERT INTO invoices SELECT * FROM invoices WHERE invoice_id = ?", invoice)
    billing_sql(world, "UPDATE invoices SET customer_id = 'C-OTHER' WHERE rowid = (SELECT max(rowid) FROM invoices)")
    for run_id in ("doubled", "doubled-again"):
        summary = run(world, run_id)
        assert {q["source_key"] for q in world["ledger"].quarantined(run_id=run_id)} == lines
        assert summary.reconciliation == []
    assert {c for (c,) in erp_sql(world, f"SELECT DISTINCT customer_id FROM {erp_lines.TABLE} WHERE invoice_id = ?",
                                  invoice)} != {"C-OTHER"}


# Found in review: keys, dates, kinds and timestamps that slipped past ------------------------------------------
@pytest.mark.parametrize("value", ["2025-13-99", "2025", "2025-1-5"])
def test_an_issue_date_that_is_no_calendar_date_blocks_the_load(world, value):
    invoice = first_line(world)["invoice_id"]
    billing_sql(world, "UPDATE invoices SET issue_date = ? WHERE invoice_id = ?", value, invoice)
    with pytest.raises(GateFailed, match="issue date is a calendar date"):
        run(world, "bad-date")


def test_a_control_character_in_a_key_holds_the_line_back(world):
    key = first_line(world)["line_id"]
    billing_sql(world, "UPDATE invoice_lines SET line_id = ? WHERE line_id = ?", key + "\t", key)
    run(world, "tab-key")
    assert [(q["source_key"], q["reasons"]) for q in world["ledger"].quarantined(run_id="tab-key")] == [
        (key + "\t", "line_id has no control characters")]


def test_an_unreadable_updated_at_blocks_naming_the_row_not_a_value_error(world):
    key = first_line(world)["line_id"]
    billing_sql(world, "UPDATE invoice_lines SET updated_at = 'zzz' WHERE line_id = ?", key)
    with pytest.raises(GateFailed) as caught:
        run(world, "bad-stamp")
    assert "updated_at is an ISO 8601 timestamp" in str(caught.value) and key in str(caught.value)


def test_a_miscased_entity_kind_is_refused_not_sent_as_a_person(world):
    key = a_customer(world, "RU")["customer_id"]
    billing_sql(world, "UPDATE customers SET entity_kind = 'Company' WHERE customer_id = ?", key)
    with pytest.raises(GateFailed, match="entity kind is company or person"):
        customers_gated(world)


def test_a_blank_description_is_held_back_and_a_quantity_that_is_no_number_blocks(world):
    first, second = [k for (k,) in billing_sql(world, "SELECT line_id FROM invoice_lines ORDER BY line_id LIMIT 2")]
    billing_sql(world, "UPDATE invoice_lines SET description = '   ' WHERE line_id = ?", first)
    run(world, "blank")
    assert [(q["source_key"], q["reasons"]) for q in world["ledger"].quarantined(run_id="blank")] == [
        (first, "description present")]
    billing_sql(world, "UPDATE invoice_lines SET quantity = 'abc', updated_at = ? WHERE line_id = ?", LATER, second)
    with pytest.raises(GateFailed, match="quantity is a number"):
        run(world, "abc")
