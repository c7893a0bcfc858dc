"""The run's workbook (ledgerlink.report.write_workbook): numbers an accountant can sum, exact to the last kuruş."""
from __future__ import annotations

import re
import sqlite3
import tracemalloc
import zipfile
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from ledgerlink.billing.figures import invoice_line_figures
from ledgerlink.flows import invoice_lines_to_erp as lines_flow
from ledgerlink.ledger import Ledger
from ledgerlink.report import MONEY_FORMAT, RunSummary, write_workbook
from sandbox.generator import generate_billing


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    generate_billing(tmp_path / "billing.db", seed=11, customers=10)
    return {"billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "erp": sa.create_engine(f"sqlite:///{tmp_path / 'erp.db'}"), "ledger": Ledger.migrated(), "path": tmp_path}


def _exact(value) -> Decimal:
    """A cell's number back as the Decimal it was written from: openpyxl reads numbers as floats, whose shortest
    repr gives back the written digits for amounts of up to 15 significant digits."""
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{value!r} is not a number"
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def test_the_workbook_totals_are_numbers_that_sum_exactly_to_the_ledgers_totals(world):
    # One line held back (its description missing): its row is readable, and it is left out of the totals.
    with sqlite3.connect(world["path"] / "billing.db") as db:
        held = db.execute("SELECT min(line_id) FROM invoice_lines").fetchone()[0]
        db.execute("UPDATE invoice_lines SET description = '' WHERE line_id = ?", (held,))
    summary = lines_flow.run_all("wb-1", world["billing"], world["erp"], world["ledger"])
    assert summary.quarantined == 1 and summary.reconciliation == []
    book = load_workbook(summary.workbook)

    # The reconciliation: source / target / difference side by side, as numbers with a money format.
    sheet = book["Reconciliation"]
    header = [c.value for c in sheet[1]]
    assert header == ["Currency", "VAT rate %", "Amount", "billing", "ERP", "Difference"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:F{sheet.max_row}"
    assert all(sheet.column_dimensions[c].width >= 10 for c in "ABCDEF")
    sums: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in sheet.iter_rows(min_row=2):
        currency, rate, amount, source, target, difference = row
        if amount.value.endswith("records"):
            assert (source.value, target.value, difference.value) == (summary.source_count, summary.target_count, 0)
            continue
        for cell in (source, target, difference):
            assert cell.number_format == MONEY_FORMAT
        assert _exact(difference.value) == 0
        sums[currency.value][amount.value] += _exact(source.value)
        assert _exact(source.value) == _exact(target.value)
    # ... and those numbers add up, per currency, to what billing's own database sums (held-back line left out).
    truth: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for (currency, _), amounts in invoice_line_figures(world["billing"], [held]).totals.items():
        for column, value in amounts.items():
            truth[currency][column] += value
    assert {c: dict(a) for c, a in sums.items()} == {c: dict(a) for c, a in truth.items()}
    assert sum(sums["TRY"].values()) > 0

    # The summary's own totals (the log's figures) equal the sheet's, digit for digit, in the XML itself.
    with zipfile.ZipFile(summary.workbook) as archive:
        xml = archive.read("xl/worksheets/sheet2.xml").decode()
    written = {Decimal(v) for v in re.findall(r"<v>([-0-9.E+]+)</v>", xml)}
    for row in summary.source_totals:
        for column in ("net", "vat", "gross"):
            assert Decimal(row[column]) in written, f"{row[column]} not written exactly"

    # Held back: readable columns in major units, not JSON in minor units.
    held_sheet = book["Held back"]
    held_header = [c.value for c in held_sheet[1]]
    assert held_header[:3] == ["Key", "Status", "Reasons"] and "gross" in held_header
    assert not any(str(name).endswith("_minor") for name in held_header)
    held_row = {name: cell for name, cell in zip(held_header, held_sheet[2])}
    assert held_row["Key"].value == held and held_row["Reasons"].value == "description present"
    assert held_row["gross"].number_format == MONEY_FORMAT and isinstance(held_row["gross"].value, (int, float))
    with sqlite3.connect(world["path"] / "billing.db") as db:
        gross_minor = db.execute("SELECT gross_minor FROM invoice_lines WHERE line_id = ?", (held,)).fetchone()[0]
    assert _exact(held_row["gross"].value) * 100 == gross_minor

    # When it was written, with its time zone.
    facts = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True)}
    stamp = datetime.fromisoformat(facts["Generated at (UTC)"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


def test_the_customers_workbook_has_no_empty_totals_sheet_but_its_counts_side_by_side(tmp_path):
    summary = RunSummary(flow="billing_customers_to_onec", run_id="r", entity="customer",
                         target="1C Catalog_Контрагенты", source="billing", target_system="1C",
                         source_count=300, target_count=299)
    book = load_workbook(write_workbook(summary, tmp_path / "c.xlsx"))
    assert "Totals" not in book.sheetnames and "Sent" not in book.sheetnames
    rows = list(book["Reconciliation"].iter_rows(values_only=True))
    assert rows[1][2:] == ("customer records", 300, 299, 1)
    for name in book.sheetnames:
        sheet = book[name]
        assert sheet.max_row > 1 or name == "Held back", f"sheet {name} is empty"


def test_a_big_workbook_is_streamed_with_flat_memory(tmp_path):
    """Held-back rows stream to disk: memory for 20,000 rows stays near that for 2,000 (write_only mode)."""
    def peak(rows: int) -> int:
        held = [{"key": f"L{n}", "status": "quarantined", "reasons": "description present",
                 "row": {"line_id": f"L{n}", "currency": "TRY", "gross_minor": n * 7}} for n in range(rows)]
        summary = RunSummary(flow="f", run_id="r", entity="invoice_line", target="ERP", held_back=held)
        tracemalloc.start()
        write_workbook(summary, tmp_path / f"big_{rows}.xlsx")
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return used - sum(len(str(h)) for h in held) * 3  # the input list itself is not the writer's memory

    small, big = peak(2_000), peak(20_000)
    assert big < small * 3, f"memory grew with the rows: {small} -> {big} bytes"


def test_an_amount_beyond_a_spreadsheets_precision_is_kept_exact_as_text(tmp_path):
    """Excel holds 15 significant digits; a larger amount is written as its exact text, never rounded."""
    huge = "12345678901234567.89"
    summary = RunSummary(flow="f", run_id="r", entity="invoice_line", target="ERP", source="billing",
                         target_system="ERP",
                         source_totals=[{"currency": "TRY", "vat_rate": "20", "net": huge, "vat": "1.10", "gross": "2.20"}],
                         target_totals=[{"currency": "TRY", "vat_rate": "20", "net": huge, "vat": "1.10", "gross": "2.20"}])
    rows = list(load_workbook(write_workbook(summary, tmp_path / "h.xlsx"))["Reconciliation"].iter_rows(values_only=True))
    net = next(r for r in rows if r[2] == "net")
    assert net[3] == net[4] == huge
    assert _exact(next(r for r in rows if r[2] == "vat")[3]) == Decimal("1.10")
