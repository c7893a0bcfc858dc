"""The nightly invoice-line flow's change tracking edge cases: late commits and changed invoice headers."""
from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
import sqlalchemy as sa

from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger
from sandbox.generator import generate_billing


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    generate_billing(tmp_path / "billing.db", seed=8, customers=6)
    return {"billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "erp": sa.create_engine(f"sqlite:///{tmp_path / 'erp.db'}"),
            "ledger": Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}"), "path": tmp_path}


def _erp_row(world, line_id: str) -> dict | None:
    with world["erp"].connect() as conn:
        row = conn.execute(sa.text(f"SELECT * FROM {erp_lines.TABLE} WHERE line_id = :k"), {"k": line_id}).first()
    return dict(row._mapping) if row else None


def test_a_line_committed_behind_the_watermark_is_still_sent(world):
    flow.run_all("first", world["billing"], world["erp"], world["ledger"])
    with sqlite3.connect(world["path"] / "billing.db") as db:
        line = db.execute("SELECT * FROM invoice_lines ORDER BY line_id LIMIT 1").fetchone()
        columns = [c[1] for c in db.execute("PRAGMA table_info(invoice_lines)")]
        late = dict(zip(columns, line))
        late.update(line_id=late["line_id"][:-4] + "0099", line_no=99, updated_at="2026-01-02T00:00:00+00:00")
        db.execute(f"INSERT INTO invoice_lines ({', '.join(late)}) VALUES ({', '.join('?' for _ in late)})",
                   list(late.values()))
        # keep the invoice's totals equal to its lines, as billing would
        db.execute("UPDATE invoices SET net_minor = net_minor + ?, vat_minor = vat_minor + ?, "
                   "gross_minor = gross_minor + ? WHERE invoice_id = ?",
                   (late["net_minor"], late["vat_minor"], late["gross_minor"], late["invoice_id"]))
    summary = flow.run_all("second", world["billing"], world["erp"], world["ledger"])
    assert summary.created == 1 and summary.reconciliation == []
    assert _erp_row(world, late["line_id"]) is not None


def test_a_changed_invoice_header_updates_its_lines(world):
    flow.run_all("first", world["billing"], world["erp"], world["ledger"])
    with sqlite3.connect(world["path"] / "billing.db") as db:
        invoice_id, = db.execute("SELECT invoice_id FROM invoices ORDER BY invoice_id LIMIT 1").fetchone()
        db.execute("UPDATE invoices SET issue_date = '2026-11-02', updated_at = '2026-11-22T10:00:00+00:00' "
                   "WHERE invoice_id = ?", (invoice_id,))
        lines = [k for (k,) in db.execute("SELECT line_id FROM invoice_lines WHERE invoice_id = ?", (invoice_id,))]
    summary = flow.run_all("second", world["billing"], world["erp"], world["ledger"])
    assert summary.updated == len(lines) and summary.reconciliation == []
    assert {_erp_row(world, k)["issue_date"] for k in lines} == {"2026-11-02"}


def test_an_invoice_total_change_alone_does_not_resend_its_lines(world):
    flow.run_all("first", world["billing"], world["erp"], world["ledger"])
    with sqlite3.connect(world["path"] / "billing.db") as db:
        db.execute("UPDATE invoices SET status = 'paid', updated_at = '2026-11-22T10:00:00+00:00' "
                   "WHERE invoice_id = (SELECT min(invoice_id) FROM invoices)")
    assert flow.run_all("second", world["billing"], world["erp"], world["ledger"]).sent == 0


def test_each_line_has_its_delivery_history_under_its_chunk(world, capsys, monkeypatch):
    """A chunk is one row of the ledger's chunks; its lines are deliveries (never items), and a line changed
    later has two of them. ``ledgerlink history`` shows the chunks as finance reads them."""
    import json

    from ledgerlink import cli

    first = flow.run_all("first", world["billing"], world["erp"], world["ledger"], chunk_rows=50)
    chunks = world["ledger"].chunks(flow=flow.FLOW, run_id="first")
    lines = world["ledger"].deliveries(flow=flow.FLOW, run_id="first")
    assert len(lines) == first.created and {d["chunk_id"] for d in lines} == {c["id"] for c in chunks}
    assert [c["chunk_index"] for c in chunks] == list(range(-(-first.created // 50)))
    assert sum(c["lines"] for c in chunks) == first.created
    assert {(c["status"], c["attempts"], c["operation"]) for c in chunks} == {("acknowledged", 1, "upsert")}
    assert world["ledger"].items(flow=flow.FLOW) == [], "lines are never items, nor are chunks"

    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", str(world["ledger"].url))
    assert cli.main(["history", "--flow", flow.FLOW]) == 0
    shown = capsys.readouterr().out
    assert f"chunk 1 of run first: {chunks[0]['lines']} lines, acknowledged at " in shown
    assert shown.count("of run first: ") == len(chunks)

    line_id = lines[0]["source_key"]
    with sqlite3.connect(world["path"] / "billing.db") as db:
        db.execute("UPDATE invoice_lines SET description = description || ' (corrected)', "
                   "updated_at = '2099-01-01T00:00:00+00:00' WHERE line_id = ?", (line_id,))
    second = flow.run_all("second", world["billing"], world["erp"], world["ledger"], chunk_rows=50)
    assert second.updated == 1

    assert cli.main(["lines", "--flow", flow.FLOW, "--key", line_id, "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(d["run_id"], d["operation"]) for d in history] == [("first", "create"), ("second", "update")]
    assert history[0]["content_hash"] != history[1]["content_hash"]


def test_a_load_retried_across_the_upgrade_reads_what_the_old_extract_staged(world):
    """Before this version a run staged Parquet files and one header file; its retry still loads them."""
    meta = flow.gate(flow.extract("old", world["billing"], world["ledger"]), world["ledger"])
    from ledgerlink.flows.staging import read_frame
    from ledgerlink.flows.state import RunState

    def as_parquet(path: str) -> str:
        old = path.replace(".arrow", ".parquet")
        read_frame(path).to_parquet(old, index=False)
        return old

    headers = pd.concat([read_frame(p) for p in meta.headers], ignore_index=True)
    untyped = meta.to_xcom()  # what the old version's XCom held: a dict, "parts", one header file
    untyped["parts"] = [as_parquet(p) for p in untyped.pop("batch")]
    untyped["headers"] = as_parquet(meta.headers[0])
    headers.to_parquet(untyped["headers"], index=False)
    state = RunState.from_xcom(untyped)
    summary = flow.reconcile_and_report(flow.load(state, world["erp"], world["ledger"]), world["billing"],
                                        world["erp"], world["ledger"])
    assert summary.created > 0 and summary.reconciliation == []
    assert len(world["ledger"].snapshot_hashes(flow.HEADER_FLOW, headers["_key"].tolist())) == len(headers)


def test_a_credit_notes_negative_lines_pass_the_gate_and_a_negative_line_on_a_sale_does_not(world):
    """Issue 22: billing writes a credit note (IADE) with negative amounts; its lines are booked as they are. A
    negative line on an ordinary invoice still blocks the load."""
    with sqlite3.connect(world["path"] / "billing.db") as db:
        (invoice_id,) = db.execute("SELECT invoice_id FROM invoices ORDER BY invoice_id LIMIT 1").fetchone()
        db.execute("INSERT INTO invoices SELECT 'CN00000001', customer_id, contract_id, 'CN-1', issue_date,"
                   " period_start, period_end, currency, -net_minor, -vat_minor, -gross_minor, 'issued', updated_at,"
                   " invoice_id FROM invoices WHERE invoice_id = ?", (invoice_id,))
        db.execute("INSERT INTO invoice_lines SELECT 'CN00000001-' || printf('%04d', line_no), 'CN00000001', line_no,"
                   " tariff_id,"
                   " description, quantity, unit_price_minor, -net_minor, vat_rate, -vat_minor, -gross_minor,"
                   " currency, updated_at FROM invoice_lines WHERE invoice_id = ?", (invoice_id,))
    summary = flow.run_all("first", world["billing"], world["erp"], world["ledger"])
    assert summary.quarantined == 0 and summary.reconciliation == []
    assert _erp_row(world, "CN00000001-0001")["net_minor"] < 0
    with sqlite3.connect(world["path"] / "billing.db") as db:
        db.execute("UPDATE invoice_lines SET net_minor = -net_minor, vat_minor = -vat_minor,"
                   " gross_minor = -gross_minor, updated_at = '2099-01-01T00:00:00+00:00'"
                   " WHERE invoice_id = ? AND line_no = 1", (invoice_id,))
    from ledgerlink.errors import GateFailed

    with pytest.raises(GateFailed, match="net amount not negative"):
        flow.run_all("second", world["billing"], world["erp"], world["ledger"])
