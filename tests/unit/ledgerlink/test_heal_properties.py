"""Property (issue 18): for any sequence of billing edits (with and without moving ``updated_at``, duplicate keys
added and removed, lines whose invoice is missing), after two runs the ERP equals billing's valid lines and the
lines held back are exactly the invalid ones.

Billing here declares no keys (a loosely kept billing database), so duplicates and orphans can happen.
"""
from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger
from tests.support.crashes import seeded_billing
from tests.support.loose_billing import drop_keys

COLUMNS = [c for c in erp_lines.COLUMNS if c != "content_hash"]
SELECT = ", ".join(f"i.{c}" if c in ("customer_id", "issue_date") else f"l.{c}" for c in COLUMNS)
LATER = ["2026-11-25T10:00:00+00:00", "2026-11-26T10:00:00+00:00", "2026-11-27T10:00:00+00:00"]

edit = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 40), st.booleans()),   # (line, move updated_at?)
    st.tuples(st.just("add_twin"), st.integers(0, 40), st.booleans()),
    st.tuples(st.just("remove_twins"), st.integers(0, 40), st.booleans()),
    st.tuples(st.just("orphan"), st.integers(0, 40), st.booleans()),
    st.tuples(st.just("delete"), st.integers(0, 40), st.booleans()),
)


def _loose_billing(folder: Path) -> Path:
    path = folder / "billing.db"
    shutil.copy(seeded_billing(4, 5), path)
    drop_keys(path)
    return path


def _apply(db: sqlite3.Connection, step: int, kind: str, index: int, moved: bool) -> None:
    keys = [k for (k,) in db.execute("SELECT DISTINCT line_id FROM invoice_lines ORDER BY line_id")]
    key = keys[index % len(keys)]
    stamp = f", updated_at = '{LATER[step % len(LATER)]}'" if moved else ""
    if kind == "edit":
        db.execute(f"UPDATE invoice_lines SET description = 'edit {step}', quantity = '{step + 1}'{stamp} "
                   f"WHERE line_id = ?", (key,))
    elif kind == "add_twin":
        db.execute("INSERT INTO invoice_lines SELECT * FROM invoice_lines WHERE line_id = ? LIMIT 1", (key,))
        db.execute(f"UPDATE invoice_lines SET description = 'twin {step}'{stamp} WHERE rowid = "
                   f"(SELECT max(rowid) FROM invoice_lines WHERE line_id = ?)", (key,))
    elif kind == "remove_twins":
        db.execute("DELETE FROM invoice_lines WHERE line_id = ? AND rowid > "
                   "(SELECT min(rowid) FROM invoice_lines WHERE line_id = ?)", (key, key))
    elif kind == "orphan":
        db.execute("INSERT INTO invoice_lines SELECT * FROM invoice_lines WHERE line_id = ? LIMIT 1", (key,))
        db.execute(f"UPDATE invoice_lines SET line_id = 'ORPHAN-{step:04d}', invoice_id = 'NO-SUCH-INVOICE'{stamp} "
                   f"WHERE rowid = (SELECT max(rowid) FROM invoice_lines)")
    elif kind == "delete":
        db.execute("DELETE FROM invoice_lines WHERE line_id = ?", (key,))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(edits=st.lists(edit, min_size=1, max_size=6))
def test_after_two_runs_the_erp_holds_the_valid_lines_and_only_the_invalid_ones_are_held_back(edits, monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="ll-heal-"))
    try:
        monkeypatch.setenv("LEDGERLINK_HOME", str(folder / "home"))
        billing_path = _loose_billing(folder)
        billing = sa.create_engine(f"sqlite:///{billing_path}")
        erp = sa.create_engine(f"sqlite:///{folder / 'erp.db'}")
        ledger = Ledger.migrated(f"sqlite:///{folder / 'ledger.db'}")
        flow.run_all("first", billing, erp, ledger, chunk_rows=30)
        with sqlite3.connect(billing_path) as db:
            for step, (kind, index, moved) in enumerate(edits):
                _apply(db, step, kind, index, moved)
        flow.run_all("second", billing, erp, ledger, chunk_rows=30)
        last = flow.run_all("third", billing, erp, ledger, chunk_rows=30)

        with sqlite3.connect(billing_path) as db:
            rows = db.execute(f"SELECT {SELECT}, i.invoice_id IS NOT NULL FROM invoice_lines l "
                              f"LEFT JOIN invoices i ON i.invoice_id = l.invoice_id").fetchall()
        with sqlite3.connect(folder / "erp.db") as db:
            target = {row[0]: row for row in db.execute(f"SELECT {', '.join(COLUMNS)} FROM {erp_lines.TABLE}")}
        copies: dict[str, int] = {}
        for row in rows:
            copies[row[0]] = copies.get(row[0], 0) + 1
        invalid = {row[0] for row in rows if copies[row[0]] > 1 or not row[-1]}
        valid = {row[0]: row[:-1] for row in rows if row[0] not in invalid}

        assert {q["source_key"] for q in ledger.quarantined(run_id="third")} == invalid
        assert {k: v for k, v in target.items() if k not in invalid} == valid
        assert last.reconciliation == [] and last.sent == 0 and last.counts_add_up()
        ledger.engine.dispose()
        billing.dispose()
        erp.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
