"""A gate over a batch that arrives in blocks (ledgerlink.gates.BlockGate): each block through GX as it comes,
held-back rows quarantined as found, one report and one ledger record for the whole batch, rows numbered in the
batch; the batch's row count and checks across blocks decided on the whole."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from ledgerlink.errors import GateFailed
from ledgerlink.gates import BlockGate, suite_for
from ledgerlink.ledger import Ledger


@pytest.fixture()
def ledger(tmp_path):
    return Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")


def _calls(start: int, count: int, **changes) -> pd.DataFrame:
    rows = [{"source_file": "f.csv", "line": start + i + 2, "call_id": f"C{start + i}", "bridge_id": "BR01",
             "customer_ref": "K1", "started_at": "2026-11-03T07:00:00+00:00", "duration_seconds": 60,
             "participants": 2, "dial_in_number": "+7", "period": "2026-11", "file_period": "2026-11",
             "account_known": True, "taken_before": False} for i in range(count)]
    frame = pd.DataFrame(rows)
    for column, values in changes.items():
        for index, value in values.items():
            frame.at[index, column] = value
    return frame


def _gate(ledger, tmp_path, max_rows=None):
    return BlockGate(suite_for("usage", max_rows=max_rows), run_id="r1", flow="bridge_usage_to_billing",
                     report_dir=tmp_path / "reports", ledger=ledger)


def test_blocks_are_gated_one_by_one_and_reported_once_with_rows_numbered_in_the_batch(ledger, tmp_path):
    gate = _gate(ledger, tmp_path)
    first = gate.check(_calls(0, 4, account_known={1: False}))
    second = gate.check(_calls(4, 5, account_known={3: False}, taken_before={4: True}))
    assert first.tolist() == [True, False, True, True]
    assert second.tolist() == [True, True, True, False, False]
    result = gate.finish()
    assert (result.evaluated_rows, result.held_back) == (9, 3)
    report = json.loads(result.report_json.read_text(encoding="utf-8"))
    checks = {c["name"]: c for c in report["checks"]}
    account = checks["customer_ref: an account with a contract plan in billing for the call's period"]
    assert report["rows"] == 9 and report["success"] is True
    assert account["unexpected_count"] == 2 and account["unexpected_rows"] == [1, 7]
    assert [row["line"] for row in account["sample"]] == [3, 9]
    assert "rows held back" in result.report_html.read_text(encoding="utf-8")
    assert [q["source_key"] for q in ledger.quarantined()] == ["C1", "C7", "C8"]
    (validation,) = ledger.validations()
    assert validation["rows"] == 9, "one ledger record for the batch, not one per block"


def test_a_blocking_defect_in_a_later_block_raises_with_the_batchs_evidence(ledger, tmp_path):
    gate = _gate(ledger, tmp_path)
    gate.check(_calls(0, 3))
    with pytest.raises(GateFailed, match="duration_seconds not negative") as blocked:
        gate.check(_calls(3, 3, duration_seconds={2: -5}))
    assert blocked.value.sample[0]["line"] == 7, "the offending row as the report shows it, its line in the file"
    report = json.loads((tmp_path / "reports" / "gate_usage.json").read_text(encoding="utf-8"))
    assert report["success"] is False and report["rows"] == 6


def test_the_row_count_bound_is_the_batchs_not_a_blocks(ledger, tmp_path):
    gate = _gate(ledger, tmp_path, max_rows=5)
    gate.check(_calls(0, 3))
    with pytest.raises(GateFailed, match="batch size within the expected volume"):
        gate.check(_calls(3, 3))


def test_a_defect_found_across_blocks_is_reported_under_its_check(ledger, tmp_path):
    gate = _gate(ledger, tmp_path)
    gate.check(_calls(0, 3))
    gate.check(_calls(3, 3))
    with pytest.raises(GateFailed, match="call_id unique within the file") as blocked:
        gate.fail("call_id unique within the file", [1, 4], [{"line": 3}, {"line": 6}], detail="2 rows")
    assert blocked.value.sample == [{"line": 3}, {"line": 6}]
    report = json.loads((tmp_path / "reports" / "gate_usage.json").read_text(encoding="utf-8"))
    unique = next(c for c in report["checks"] if c["name"] == "call_id unique within the file")
    assert unique["success"] is False and unique["unexpected_rows"] == [1, 4]
