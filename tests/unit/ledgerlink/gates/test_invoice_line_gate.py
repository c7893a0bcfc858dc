"""Gates on the invoice-line flow: a blocking failure loads nothing; a warning failure holds rows back."""
from __future__ import annotations

from decimal import Decimal

import json
import sqlite3

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from ledgerlink import cli
from ledgerlink.billing.figures import invoice_line_figures
from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.errors import GateFailed
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger
from sandbox.generator import generate_billing


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    generate_billing(tmp_path / "billing.db", seed=5, customers=8)
    return {"billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "erp": sa.create_engine(f"sqlite:///{tmp_path / 'erp.db'}"), "ledger": Ledger.migrated(), "path": tmp_path}


def _edit(world, sql: str, *params) -> None:
    with sqlite3.connect(world["path"] / "billing.db") as db:
        db.execute(sql, params)


def test_a_blocking_failure_loads_nothing_and_names_the_rows(world):
    _edit(world, "UPDATE invoice_lines SET vat_minor = vat_minor + 1 WHERE line_id = "
                 "(SELECT min(line_id) FROM invoice_lines WHERE vat_minor > 0)")
    with pytest.raises(GateFailed) as caught:
        flow.run_all("blocked", world["billing"], world["erp"], world["ledger"])
    message = str(caught.value)
    assert "VAT matches the line's rate" in message and "gross = net + VAT" in message
    assert "line_id 'IN" in message, "the first offending rows are shown, by their key"
    assert "_minor" not in message and message.count("VAT matches the line's rate") == 1, \
        "money in major units, each check named once"
    assert erp_lines.count_loaded(world["erp"]) == 0
    assert world["ledger"].items() == world["ledger"].chunks() == [], "nothing planned, nothing sent"
    validation = world["ledger"].validations()[-1]
    assert not validation["success"]
    assert json.loads((open(validation["report_json"]).read()))["success"] is False
    assert "BLOCKS the load" in open(validation["report_html"]).read()


def test_a_warning_failure_holds_rows_back_and_loads_the_rest(world, capsys):
    with sqlite3.connect(world["path"] / "billing.db") as db:
        held = db.execute("SELECT line_id FROM invoice_lines ORDER BY line_id LIMIT 2").fetchall()
        db.executemany("UPDATE invoice_lines SET description = '' WHERE line_id = ?", held)
        total = db.execute("SELECT count(*) FROM invoice_lines").fetchone()[0]
    held_keys = {key for (key,) in held}

    summary = flow.run_all("warned", world["billing"], world["erp"], world["ledger"])
    assert summary.quarantined == 2 and summary.reconciliation == []
    assert erp_lines.count_loaded(world["erp"]) == total - 2
    quarantined = world["ledger"].quarantined()
    assert {q["source_key"] for q in quarantined} == held_keys
    assert all(q["reasons"] == "description present" for q in quarantined)

    assert cli.main(["quarantine", "--json"]) == 0
    assert {row["source_key"] for row in json.loads(capsys.readouterr().out)} == held_keys

    book = load_workbook(summary.workbook, read_only=True)
    held_sheet = list(book["Held back"].iter_rows(values_only=True))
    assert held_sheet[0][:3] == ("Key", "Status", "Reasons") and "gross" in held_sheet[0]
    assert {row[0] for row in held_sheet[1:]} == held_keys
    gross = held_sheet[0].index("gross")
    assert all(isinstance(row[gross], (int, float)) for row in held_sheet[1:]), "held-back money as numbers"
    summary_sheet = dict(row[:2] for row in book["Summary"].iter_rows(values_only=True))
    assert summary_sheet["Quarantined"] == 2 and summary_sheet["Reconciliation"] == "OK"
    sent = list(book["Sent"].iter_rows(values_only=True))[1:]
    assert [(r[0], r[1], *(Decimal(str(v)) for v in r[2:])) for r in sent] == \
        [(t["currency"], t["vat_rate"], Decimal(t["net"]), Decimal(t["vat"]), Decimal(t["gross"]))
         for t in summary.totals], "the workbook's totals are the log's totals"

    # Fixed at the source, the held-back lines travel on the next run, though older than the watermark.
    with sqlite3.connect(world["path"] / "billing.db") as db:
        db.executemany("UPDATE invoice_lines SET description = 'fixed' WHERE line_id = ?", held)
    again = flow.run_all("fixed", world["billing"], world["erp"], world["ledger"])
    assert again.sent == 2 and again.quarantined == 0
    assert erp_lines.count_loaded(world["erp"]) == total


def test_money_crosses_task_boundaries_as_exact_text(world):
    """What a task returns goes through XCom; amounts must survive it exactly (no float on the way)."""
    meta = flow.load(flow.gate(flow.extract("xcom", world["billing"], world["ledger"]), world["ledger"]),
                     world["erp"], world["ledger"])
    assert meta.sent_totals, "the run sent money"
    for row in meta.sent_totals:
        for column in ("net", "vat", "gross"):
            assert isinstance(row[column], str) and row[column].count(".") == 1 and len(row[column].split(".")[1]) == 2
    from ledgerlink.flows.state import RunState

    assert RunState.from_xcom(json.loads(json.dumps(meta.to_xcom()))) == meta


def test_rows_held_back_in_several_chunks_are_all_kept(world):
    with sqlite3.connect(world["path"] / "billing.db") as db:
        keys = [k for (k,) in db.execute("SELECT line_id FROM invoice_lines ORDER BY line_id")]
        held = {keys[0], keys[-1]}  # first and last chunk
        db.executemany("UPDATE invoice_lines SET description = '' WHERE line_id = ?", [(k,) for k in held])
    summary = flow.run_all("chunked", world["billing"], world["erp"], world["ledger"], chunk_rows=10)
    assert {q["source_key"] for q in world["ledger"].quarantined()} == held
    assert summary.quarantined == 2 and summary.reconciliation == []


def test_a_run_larger_than_the_expected_volume_is_blocked(world, monkeypatch):
    """A first load may bring the whole table; after it, a run far above the usual volume is blocked."""
    import dataclasses
    from datetime import datetime, timezone

    from sandbox.generator import mutate_billing

    # The flow's spec, as the exchange map declares it, with a per-run volume of 5.
    monkeypatch.setattr(flow, "SPEC", dataclasses.replace(flow.SPEC, volume_per_run=5))
    first = flow.run_all("initial", world["billing"], world["erp"], world["ledger"], chunk_rows=10)
    assert first.created > 5, "the initial load is checked against the total volume, not the per-run one"
    mutate_billing(world["path"] / "billing.db", seed=4, changed_fraction=0.5,
                   as_of=datetime(2026, 11, 21, tzinfo=timezone.utc))
    with pytest.raises(GateFailed, match="at most 5 per run"):
        flow.run_all("runaway", world["billing"], world["erp"], world["ledger"], chunk_rows=10)
    assert world["ledger"].chunks(run_id="runaway") == [], "nothing of the blocked run was sent"
    assert world["ledger"].items(run_id="runaway") == []


def test_reconciliation_leaves_out_more_held_back_rows_than_sqlite_can_bind(world):
    """Thousands of held-back keys are subtracted in slices, not bound into one NOT IN list."""
    keys = [f"missing-{i}" for i in range(40_000)]
    with sqlite3.connect(world["path"] / "billing.db") as db:
        first = db.execute("SELECT line_id FROM invoice_lines ORDER BY line_id LIMIT 1").fetchone()[0]
    full = invoice_line_figures(world["billing"])
    without = invoice_line_figures(world["billing"], keys + [first])
    assert without.count == full.count - 1
