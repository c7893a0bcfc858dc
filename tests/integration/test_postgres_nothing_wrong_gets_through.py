"""Issue 18 on PostgreSQL (billing, ERP and ledger on a throwaway cluster): the server-side paths.

On PostgreSQL the extract compares billing's content fingerprint (every line hashed by the server) with the
snapshot's, and reconciliation hashes every line on both servers; these tests prove those paths, not the
SQLite ones that tests/unit/ledgerlink/test_nothing_wrong_gets_through.py covers.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.errors import FlowBusy, GateFailed, ReconciliationError
from ledgerlink.flows import invoice_lines_to_erp as flow
from tests.support.pg_world import server, world  # noqa: F401 - the fixtures

LATER = "2026-11-25T10:00:00+00:00"


def sql(engine: sa.Engine, statement: str, **params):
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), params)
        return result.all() if result.returns_rows else None


def run(world, run_id: str):
    return flow.run_all(run_id, world["billing"], world["erp"], world["ledger"], chunk_rows=100)


def first_line(world) -> dict:
    with world["billing"].connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM invoice_lines ORDER BY line_id LIMIT 1")).one()._mapping)


def test_a_quiet_night_is_settled_by_the_fingerprint_and_a_silent_edit_is_found(world, monkeypatch):
    run(world, "first")
    compared = []
    real = flow._compare_every_line
    monkeypatch.setattr(flow, "_compare_every_line", lambda *a, **k: compared.append(1) or real(*a, **k))
    assert run(world, "quiet").sent == 0 and compared == [], "nothing changed: no line is read or compared"

    key = first_line(world)["line_id"]
    sql(world["billing"], "UPDATE invoice_lines SET quantity = '999' WHERE line_id = :k", k=key)  # updated_at kept
    healed = run(world, "silent")
    assert compared == [1] and healed.updated == 1 and healed.reconciliation == []
    assert sql(world["erp"], f"SELECT quantity FROM {erp_lines.TABLE} WHERE line_id = :k", k=key) == [("999",)]


def test_content_drift_in_the_erp_is_named_by_the_servers_hashes(world):
    run(world, "first")
    key = first_line(world)["line_id"]
    sql(world["erp"], f"UPDATE {erp_lines.TABLE} SET description = 'edited in the ERP' WHERE line_id = :k", k=key)
    with pytest.raises(ReconciliationError) as caught:
        run(world, "drift")
    assert "1 line(s) differ" in str(caught.value) and key in str(caught.value)


def test_duplicates_and_orphans_are_held_back_on_postgres(world):
    sql(world["billing"], "ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_pkey, "
                          "ALTER COLUMN net_minor DROP NOT NULL")
    run(world, "first")
    line = first_line(world)
    columns = ", ".join(line)
    values = ", ".join(f":{c}" for c in line)
    sql(world["billing"], f"INSERT INTO invoice_lines ({columns}) VALUES ({values})",
        **{**line, "description": "the twin's wording", "updated_at": LATER})
    sql(world["billing"], f"INSERT INTO invoice_lines ({columns}) VALUES ({values})",
        **{**line, "line_id": "IN99999999-0001", "invoice_id": "IN99999999", "updated_at": LATER})
    summary = run(world, "bad-rows")
    held = {(q["source_key"], q["reasons"]) for q in world["ledger"].quarantined(run_id="bad-rows")}
    assert held == {(line["line_id"], "line id unique in billing"),
                    ("IN99999999-0001", "the line's invoice exists in billing")}
    assert summary.reconciliation == [] and summary.counts_add_up()
    assert sql(world["erp"], f"SELECT description FROM {erp_lines.TABLE} WHERE line_id = :k", k=line["line_id"]) \
        == [(line["description"],)], "the ERP keeps the last valid version"


def test_a_null_amount_read_through_arrow_blocks_naming_the_line(world):
    sql(world["billing"], "ALTER TABLE invoice_lines ALTER COLUMN vat_minor DROP NOT NULL")
    key = first_line(world)["line_id"]
    sql(world["billing"], "UPDATE invoice_lines SET vat_minor = NULL WHERE line_id = :k", k=key)
    with pytest.raises(GateFailed) as caught:
        run(world, "null-vat")
    assert "vat_minor present" in str(caught.value) and key in str(caught.value)
    assert erp_lines.count_loaded(world["erp"]) == 0


def test_two_runs_at_once_on_a_postgres_ledger(world):
    flow.extract("one", world["billing"], world["ledger"])
    with pytest.raises(FlowBusy):
        flow.extract("two", world["billing"], world["ledger"])
