"""``ledgerlink history`` and ``planned``: what went to a target, when, in which request or numbered message, with
what result, narrowed by target, entity and period, as a table and as JSON; an item sent without an answer is
"unconfirmed", never "sent"."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from ledgerlink import cli
from ledgerlink.ledger import Item, Ledger, PlannedChange


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", url)
    ledger = Ledger.migrated(url)
    yield ledger
    ledger.engine.dispose()


def _at(ledger: Ledger, item_id: int, day: int) -> None:
    moment = datetime(2026, 11, day, 3, 0, tzinfo=timezone.utc)
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(Item).where(Item.id == item_id).values(updated_at=moment, planned_at=moment))


def _fill(ledger: Ledger) -> dict[str, int]:
    """Invoices to 1C over OData on three nights, one of them unconfirmed, one held back, one refused; a customer
    to 1C; a file-exchange invoice in message 7; an invoice line to the ERP."""
    ids = {}
    plan = [("IN1", "onec", "invoice", "i1", 1), ("IN2", "onec", "invoice", "i2", 2), ("IN3", "onec", "invoice", "i3", 3),
            ("IN4", "onec", "invoice", "i4", 3), ("IN5", "onec", "invoice", "i5", 3), ("C1", "onec", "customer", "c1", 2),
            ("IN6", "onec_files", "invoice", "f6", 2), ("L1", "erp", "invoice_line", "l1", 2)]
    for key, target, entity, target_key, day in plan:
        flow = f"to_{target}_{entity}"
        item_id = ledger.plan(f"run-{day}", flow, target, entity,
                              [PlannedChange(key, target_key, f"h-{key}", "create")])[key]
        ids[key] = item_id
        if key == "IN6":
            ledger.mark_sent([item_id], message_no=7)
        else:
            ledger.mark_sent([item_id])
        if key in ("IN1", "IN2", "C1", "IN6", "L1"):
            ledger.record_written(item_id, version="AAA=", request=f"POST Document_X(guid'{target_key}')/Post")
            ledger.acknowledge(flow, [(item_id, key, f"h-{key}", target_key, "create")])
        elif key == "IN4":
            ledger.hold_back(item_id, "invoice IN4 held back: edited in 1C")
        elif key == "IN5":
            ledger.record_failure(item_id, "1C refused the request: Не удалось провести документ БЛ-5", terminal=True)
        _at(ledger, item_id, day)
    return ids


def _json(capsys, *argv) -> list[dict]:
    assert cli.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_history_by_target_entity_and_period_with_request_message_and_result(ledger, capsys):
    _fill(ledger)
    rows = _json(capsys, "history", "--target", "onec", "--entity", "invoice")
    assert [r["what"] for r in rows] == ["IN1", "IN2", "IN3", "IN4", "IN5"]
    by_key = {r["what"]: r for r in rows}
    assert by_key["IN1"]["via"] == "POST Document_X(guid'i1')/Post" and by_key["IN1"]["result"] == "acknowledged (create)"
    assert by_key["IN3"]["result"].startswith("unconfirmed") and "sent" != by_key["IN3"]["result"]
    assert by_key["IN4"]["result"] == "held back: invoice IN4 held back: edited in 1C"
    assert by_key["IN5"]["result"].startswith("refused: ") and "БЛ-5" in by_key["IN5"]["result"]

    night_2 = _json(capsys, "history", "--target", "onec", "--entity", "invoice", "--since", "2026-11-02",
                    "--until", "2026-11-03")
    assert [r["what"] for r in night_2] == ["IN2"]
    assert [r["what"] for r in _json(capsys, "history", "--target", "onec", "--since", "2026-11-02",
                                     "--until", "2026-11-03")] == ["IN2", "C1"]
    (message,) = _json(capsys, "history", "--target", "onec_files")
    assert message["via"] == "message 7" and message["result"] == "acknowledged (create)"

    assert cli.main(["history", "--target", "onec", "--entity", "invoice", "--since", "2026-11-03"]) == 0
    table = capsys.readouterr().out
    assert "via" in table.splitlines()[0] and "result" in table.splitlines()[0]
    assert "IN3" in table and "unconfirmed" in table and "IN1" not in table


def test_planned_shows_what_goes_next_and_the_unconfirmed_never_as_sent(ledger, capsys):
    _fill(ledger)
    extra = ledger.plan("run-4", "to_onec_invoice", "onec", "invoice",
                        [PlannedChange("IN7", "i7", "h7", "create")])["IN7"]
    _at(ledger, extra, 4)
    rows = _json(capsys, "planned", "--target", "onec", "--entity", "invoice")
    assert [(r["what"], r["result"].split(":")[0]) for r in rows] == [("IN3", "unconfirmed"), ("IN7", "planned")]
    assert all(r["result"] != "sent" for r in rows)
    assert [r["what"] for r in _json(capsys, "planned", "--since", "2026-11-04")] == ["IN7"]
    assert [r["what"] for r in _json(capsys, "planned", "--until", "2026-11-04")] == ["IN3"]
    assert _json(capsys, "planned", "--entity", "customer") == []
