"""The summary block finance reads at the end of every run (ledgerlink.report, flows.closing.summarise_run)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from ledgerlink.errors import GateFailed
from ledgerlink.flows.closing import summarise_run
from ledgerlink.flows.steps import blocked_on_gate_failure
from ledgerlink.flows.spec import spec_of
from ledgerlink.ledger import Ledger, PlannedChange
from ledgerlink.report import RunSummary, money, readable_row

FLOW = "billing_customers_to_onec"


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    return Ledger.migrated()


def _lines_summary(**overrides) -> RunSummary:
    values = dict(flow="billing_invoice_lines_to_erp", run_id="r1", entity="invoice_line",
                  target="ERP billed_invoice_lines", source="billing", target_system="ERP",
                  source_count=1200, target_count=1200,
                  source_totals=[{"currency": "TRY", "vat_rate": "20", "net": "1234567.80", "vat": "246913.56",
                                  "gross": "1481481.36"}],
                  target_totals=[{"currency": "TRY", "vat_rate": "20", "net": "1234567.80", "vat": "246913.56",
                                  "gross": "1481481.36"}],
                  reconciliation_detail="billing 1200 lines, ERP 1200 lines")
    values.update(overrides)
    return RunSummary(**values)


def test_a_night_without_changes_shows_the_totals_themselves_on_both_sides():
    text = _lines_summary().text()
    assert "sent: 0 (created 0, updated 0)" in text
    assert "equal in" not in text, "the figures, not a count of groups that agree"
    header = next(line for line in text.splitlines() if line.strip().startswith("totals"))
    assert header.split() == ["totals", "billing", "ERP", "difference"]
    gross = next(line for line in text.splitlines() if "TRY VAT 20% gross" in line)
    assert gross.split()[-3:] == ["1,481,481.36", "1,481,481.36", "0.00"]
    records = next(line for line in text.splitlines() if "invoice_line records" in line)
    assert records.split()[-3:] == ["1200", "1200", "0"]


def test_a_difference_shows_both_sides_and_what_it_is():
    summary = _lines_summary(target_totals=[{"currency": "TRY", "vat_rate": "20", "net": "1234567.79",
                                             "vat": "246913.56", "gross": "1481481.35"}], target_count=1199)
    text = summary.text()
    net = next(line for line in text.splitlines() if "TRY VAT 20% net" in line)
    assert net.split()[-3:] == ["1,234,567.80", "1,234,567.79", "0.01"]
    assert next(line for line in text.splitlines() if "records" in line).split()[-1] == "1"


def test_a_changed_amount_shows_old_and_new():
    changes = [{"key": f"IN{n:08d}-0001", "field": "gross", "currency": "TRY", "old": "1200.00", "new": "1250.50"}
               for n in range(12)]
    text = _lines_summary(updated=12, sent=12, changes=12, changed_amounts=changes).text()
    assert "IN00000000-0001 gross: TRY 1,200.00 → 1,250.50" in text
    assert "amounts changed (12):" in text and "… and 2 more" in text, "capped, with a count"


def test_held_back_rows_are_named_one_per_key_with_amount_and_reason_capped():
    held = [{"key": f"IN{n:08d}-0001", "status": "quarantined", "reasons": "description present",
             "row": json.dumps({"line_id": f"IN{n:08d}-0001", "currency": "TRY", "gross_minor": 120050,
                                "description": None, "_row": n})} for n in range(13)]
    text = _lines_summary(quarantined=13, changes=13, held_back=held).text()
    assert "held back (13):" in text
    assert "IN00000000-0001 (TRY gross 1,200.50): held back: description present" in text
    assert "_minor" not in text and "120050" not in text, "money in major units, not minor"
    assert "… and 3 more" in text
    assert text.count("description present") == 10


def test_readable_row_turns_minor_units_into_exact_major_amounts():
    row = readable_row({"line_id": "L1", "currency": "RUB", "net_minor": 123456789012345678, "_hash": "x"})
    assert row == {"line_id": "L1", "currency": "RUB", "net": Decimal("1234567890123456.78")}
    assert money(row["net"]) == "1,234,567,890,123,456.78"


def test_a_failed_run_says_what_was_sent_what_waits_and_what_happens_next(ledger):
    ledger.start_run("r1", FLOW)
    ids = ledger.plan("r1", FLOW, "onec", "customer",
                      [PlannedChange(f"C{n:05d}", f"ref-{n}", f"h{n}", "create") for n in range(15)])
    ledger.acknowledge(FLOW, [(ids["C00000"], "C00000", "h0", "ref-0", "create"),
                              (ids["C00001"], "C00001", "h1", "ref-1", "create"),
                              (ids["C00002"], "C00002", "h2", "ref-2", "create")])
    ledger.mark_sent([ids["C00003"]])
    outage = ("customer C00003 (Acme Ltd), create in onec: 1C answered HTTP 503 Service Unavailable to GET "
              "http://1c/odata/standard.odata/Catalog_Контрагенты: will retry; nothing lost")
    ledger.record_failure(ids["C00003"], outage, terminal=False)
    ledger.end_run_early("r1", FLOW, "failed", "task load: TransientError: " + outage)

    summary = summarise_run(ledger, FLOW, "r1", failed_tasks=["load", "reconcile_and_report"],
                            next_run="at 2026-12-03 03:20 UTC")
    text = summary.text()
    assert "run: r1 | FAILED" in text
    assert "sent: 3 (created 3, updated 0)" in text and "waiting: 12" in text
    assert "C00003: customer C00003 (Acme Ltd)" in text and "Catalog_Контрагенты" in text
    assert "1C unavailable: 12 customers wait; Airflow retries with the next run (at 2026-12-03 03:20 UTC)" in text
    assert "nothing is lost" in text
    assert "… and 2 more" in text


def test_a_blocked_gate_says_so_once_in_major_units(ledger):
    ledger.start_run("r2", FLOW)
    error = GateFailed("customer", ["tax id check digits valid (expect_column_values_to_match_regex): 1 row(s)"],
                       ["tax_id '1234567890': legal_name 'Acme Ltd', gross 1,200.00 TRY"], "/reports/gate.html")
    with pytest.raises(GateFailed), blocked_on_gate_failure(ledger, spec_of(FLOW), "r2"):
        raise error
    text = summarise_run(ledger, FLOW, "r2", failed_tasks=["gate"], next_run="at 10:00 UTC").text()
    assert "run: r2 | BLOCKED" in text
    assert text.count("tax id check digits valid") == 1
    assert "gross 1,200.00 TRY" in text and "{" not in text, "the offending row as text, not a Python dict"
    assert "the gate blocked the load: nothing was loaded" in text
    assert "waiting" not in text


def test_a_closed_run_is_shown_from_its_stored_summary_with_what_comes_next(ledger):
    ledger.start_run("r3", FLOW)
    stored = _lines_summary(flow=FLOW, run_id="r3", created=2, sent=2, changes=2)
    ledger.finish_run("r3", FLOW, "succeeded", stored.as_dict())
    text = summarise_run(ledger, FLOW, "r3", next_run="at 11:00 UTC").text()
    assert "run: r3 | SUCCEEDED" in text and "sent: 2 (created 2, updated 0)" in text
    assert "next: nothing waits; the next run at 11:00 UTC" in text
    assert "1,481,481.36" in text


def test_the_next_run_is_named_from_the_dags_schedule():
    from datetime import datetime, timezone

    from airflow.sdk import Asset

    from ledgerlink.spine import exchange_dag
    from ledgerlink.tasks import next_run_phrase

    dag = exchange_dag(FLOW, produces=Asset(name="x", uri="x://y/z"))  # hourly in the exchange map
    assert next_run_phrase(dag, datetime(2026, 12, 3, 3, 20, tzinfo=timezone.utc)) == "at 2026-12-03 04:00 UTC"
    assert dag.get_task("summary").trigger_rule == "all_done"
    assert dag.get_task("summary").upstream_task_ids == {"reconcile_and_report"}


def test_a_flow_with_its_own_summary_is_shown_in_its_own_terms(ledger):
    """The usage intake and ratings keep their own text (files, documents); the block adds status and next."""
    ledger.start_run("r4", "usage_rating_nightly")
    own = "===== Ledgerlink: usage_rating_nightly =====\nrun: r4\nwhat: usage -> invoices\nperiods: 2026-11 | documents: invoices created 3"
    ledger.finish_run("r4", "usage_rating_nightly", "succeeded", {"flow": "usage_rating_nightly", "run_id": "r4",
                                                                   "text": own})
    text = summarise_run(ledger, "usage_rating_nightly", "r4", next_run="at 2026-12-03 01:30 UTC").text()
    assert "run: r4 | SUCCEEDED" in text and "periods: 2026-11 | documents: invoices created 3" in text
    assert "sent: 0" not in text and "changes: 0" not in text, "no generic zero counts over its own"
    assert "next: nothing waits; the next run at 2026-12-03 01:30 UTC" in text
