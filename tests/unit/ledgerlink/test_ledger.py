"""The ledger: items stay open until acknowledged, retries continue them, and the CLI answers from it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from ledgerlink import cli
from ledgerlink.errors import ConfigurationError
from ledgerlink.ledger import ACKNOWLEDGED, PLANNED, REJECTED, SENT, Ledger, PlannedChange
from ledgerlink.migrations import VERSION_TABLE, head
from tests.support.ledger_history import (check_a_fresh_ledger_migrates_to_exactly_the_models,
                                          check_a_ledger_at_0004_moves_its_chunk_items_to_chunks_keeping_every_row,
                                          check_a_ledger_built_before_alembic_upgrades_keeping_every_row,
                                          check_a_schema_2_ledger_upgrades_without_listing_a_delivery_twice,
                                          check_every_delivery_is_listed_once)


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return Ledger.migrated()


def test_migrations_are_recorded_and_idempotent(ledger):
    with ledger.engine.connect() as conn:
        assert conn.scalar(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")) == head()
    assert Ledger.migrated(ledger.url).runs() == []


def test_a_fresh_ledger_migrates_to_exactly_the_models(tmp_path):
    check_a_fresh_ledger_migrates_to_exactly_the_models(f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.parametrize("version", [3, 4])
def test_a_ledger_built_before_alembic_upgrades_keeping_every_row(tmp_path, version):
    check_a_ledger_built_before_alembic_upgrades_keeping_every_row(f"sqlite:///{tmp_path / 'old.db'}", version)


def test_a_ledger_at_0004_moves_its_chunk_items_to_chunks_keeping_every_row(tmp_path):
    check_a_ledger_at_0004_moves_its_chunk_items_to_chunks_keeping_every_row(f"sqlite:///{tmp_path / 'at-0004.db'}")


def test_a_ledger_that_was_not_migrated_is_refused_with_what_to_run(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    with pytest.raises(ConfigurationError, match=r"has no schema yet.*run `ledgerlink migrate`"):
        Ledger(url)
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", url)
    assert cli.main(["runs"]) == 2
    assert "run `ledgerlink migrate`" in capsys.readouterr().err


def test_ledgerlink_migrate_upgrades_the_default_ledger_and_a_second_run_does_nothing(tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.setenv("LEDGERLINK_LEDGER_URL", f"sqlite:///{tmp_path / 'default.db'}")
    assert cli.main(["migrate"]) == 0
    assert capsys.readouterr().out == f"ledger sqlite:///{tmp_path / 'default.db'}: empty -> {head()} (head)\n"
    before = (tmp_path / "default.db").read_bytes()
    assert cli.main(["migrate"]) == 0
    assert capsys.readouterr().out == f"ledger sqlite:///{tmp_path / 'default.db'}: at {head()} (head), nothing to do\n"
    assert (tmp_path / "default.db").read_bytes() == before
    assert cli.main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_history_lists_every_line_delivery_once(ledger):
    check_every_delivery_is_listed_once(ledger)


def test_a_schema_2_ledger_upgrades_without_listing_a_delivery_twice(ledger):
    check_a_schema_2_ledger_upgrades_without_listing_a_delivery_twice(ledger.url)


def test_an_item_is_open_until_acknowledged_and_a_retry_continues_it(ledger):
    change = PlannedChange("C1", "ref-1", "h1", "create")
    ids = ledger.plan("run-1", "flow", "onec", "customer", [change])
    assert ledger.items()[0]["status"] == PLANNED
    ledger.mark_sent([ids["C1"]])
    ledger.record_failure(ids["C1"], "1C did not answer", terminal=False)
    assert [i["status"] for i in ledger.planned()] == [SENT]
    assert ledger.snapshot("flow") == {}, "nothing moves before the receiver confirms"

    again = ledger.plan("run-1-retry", "flow", "onec", "customer", [change])
    assert again == ids, "the retry continues the same item"
    ledger.mark_sent([ids["C1"]])
    ledger.acknowledge("flow", [(ids["C1"], "C1", "h1", "ref-1", "create")])
    item = ledger.items()[0]
    assert (item["status"], item["attempts"], item["last_error"]) == (ACKNOWLEDGED, 2, None)
    assert ledger.snapshot("flow") == {"C1": ("h1", "ref-1")}
    assert ledger.planned() == []

    ids = ledger.plan("run-2", "flow", "onec", "customer", [PlannedChange("C1", "ref-1", None, "delete")])
    ledger.acknowledge("flow", [(ids["C1"], "C1", None, "ref-1", "delete")])
    assert ledger.snapshot("flow") == {}


def test_superseded_and_terminal_items_are_closed(ledger):
    ids = ledger.plan("r", "flow", "onec", "customer", [PlannedChange("A", "a", "1", "create"),
                                                        PlannedChange("B", "b", "2", "create")])
    ledger.record_failure(ids["A"], "HTTP 400: bad ИНН", terminal=True)
    assert ledger.close_superseded("flow", still_wanted=set()) == 1
    statuses = {i["source_key"]: (i["status"], i["last_error"]) for i in ledger.items()}
    assert statuses["A"] == (REJECTED, "HTTP 400: bad ИНН")
    assert statuses["B"][0] == REJECTED and statuses["B"][1].startswith("superseded")


def test_cli_history_planned_and_quarantine(ledger, capsys):
    ids = ledger.plan("r1", "billing_customers_to_onec", "onec", "customer",
                      [PlannedChange("C1", "ref-1", "h", "create"), PlannedChange("C2", "ref-2", "h", "create")])
    ledger.mark_sent([ids["C1"]])
    ledger.acknowledge("billing_customers_to_onec", [(ids["C1"], "C1", "h", "ref-1", "create")])
    ledger.quarantine("r1", "billing_customers_to_onec", "customer", [("C3", ["email looks like an address"],
                                                                      {"email": "nope"})])
    assert cli.main(["history", "--target", "onec", "--since", "2026-01-01", "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(h["source_key"], h["status"]) for h in history] == [("C1", ACKNOWLEDGED)]
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    assert cli.main(["history", "--since", tomorrow, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert cli.main(["planned", "--json"]) == 0
    assert [p["source_key"] for p in json.loads(capsys.readouterr().out)] == ["C2"]
    assert cli.main(["quarantine"]) == 0
    out = capsys.readouterr().out
    assert "C3" in out and "email looks like an address" in out


def test_cli_history_planned_and_runs_show_chunks_as_finance_reads_them(ledger, capsys):
    """A chunked load's chunks, not its lines, are what ``history``, ``planned`` and ``runs`` show: an
    acknowledged chunk with its lines and time, one in flight as waiting for its confirmation, the deletions."""
    flow = "billing_invoice_lines_to_erp"
    ledger.start_run("nightly", flow)
    first = ledger.plan_chunk("nightly", flow, "erp", "invoice_line", 0, "upsert", 2, sent=True)
    ledger.record_confirmed_lines(flow, first, ["L1", "L2"], ["1", "2"], ["create", "create"])
    deletions = ledger.plan_chunk("nightly", flow, "erp", "invoice_line", -1, "delete", 1, sent=True)
    ledger.record_confirmed_lines(flow, deletions, ["L0"], [None], ["delete"])
    third = ledger.plan_chunk("nightly", flow, "erp", "invoice_line", 2, "upsert", 200_000, sent=True)
    ledger.record_chunk_failure(third, "the ERP went away", terminal=False)
    acknowledged_at = {c["id"]: c["acknowledged_at"] for c in ledger.chunks()}[first]

    assert cli.main(["history", "--target", "erp", "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(h["kind"], h["chunk_index"], h["status"], h["lines"]) for h in history] == [
        ("chunk", 0, ACKNOWLEDGED, 2), ("chunk", -1, ACKNOWLEDGED, 1), ("chunk", 2, SENT, 200_000)]
    assert history[0]["what"] == (f"chunk 1 of run nightly: 2 lines, acknowledged at "
                                  f"{acknowledged_at:%Y-%m-%d %H:%M:%S} UTC")
    assert history[1]["what"].startswith("deletions of run nightly: 1 lines, acknowledged at ")
    assert history[2]["what"].startswith("chunk 3 of run nightly: 200000 lines, sent at ")
    assert history[2]["what"].endswith(", not confirmed yet (attempt 1)")
    assert history[2]["last_error"] == "the ERP went away"
    assert cli.main(["history", "--flow", flow]) == 0
    shown = capsys.readouterr().out
    assert "chunk 1 of run nightly: 2 lines, acknowledged at " in shown and "the ERP went away" in shown

    assert cli.main(["planned", "--json"]) == 0
    assert [(p["kind"], p["id"]) for p in json.loads(capsys.readouterr().out)] == [("chunk", third)]
    assert cli.main(["planned"]) == 0
    assert "chunk 3 of run nightly: 200000 lines, sent at " in capsys.readouterr().out
    assert cli.main(["runs"]) == 0
    assert "2 acknowledged, 1 sent" in capsys.readouterr().out
    assert cli.main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["chunks"] == {ACKNOWLEDGED: 2, SENT: 1}

    # The run is retried: chunk 3 goes again (its second attempt), and is acknowledged.
    assert ledger.plan_chunk("nightly", flow, "erp", "invoice_line", 2, "upsert", 200_000, sent=True) == third
    ledger.record_confirmed_lines(flow, third, ["L3"], ["3"], ["create"])
    assert ledger.planned() == [] and ledger.items() == []
    assert [(c["chunk_index"], c["attempts"], c["last_error"]) for c in ledger.chunks()] == [
        (0, 1, None), (-1, 1, None), (2, 2, None)]


def test_an_open_chunk_of_an_abandoned_run_is_closed_when_the_next_run_loads(ledger):
    from ledgerlink.delivery import ChunkDelivery

    killed = ledger.plan_chunk("killed", "lines", "erp", "invoice_line", 0, "upsert", 5, sent=True)
    ChunkDelivery(ledger, flow="lines", run_id="next", target="erp", entity="invoice_line", chunks=1)
    chunk = ledger.chunks()[0]
    assert (chunk["id"], chunk["status"]) == (killed, REJECTED)
    assert chunk["last_error"].startswith("superseded: run next took over")
    assert ledger.planned() == []


def test_the_ledger_can_live_behind_an_airflow_connection(tmp_path, monkeypatch):
    monkeypatch.delenv("LEDGERLINK_LEDGER_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_LEDGERLINK_LEDGER", f"sqlite:///{tmp_path / 'via-connection.db'}")
    assert cli.main(["migrate"]) == 0
    ledger = Ledger()
    assert ledger.runs() == []
    assert (tmp_path / "via-connection.db").exists()


# What was importable from ledger.py before it became a package, _make_engine included (ledgerlink.migrations).
NAMES_OF_THE_MODULE = [
    "PLANNED", "SENT", "ACKNOWLEDGED", "REJECTED", "QUARANTINED", "OPEN_STATUSES", "CREATE", "UPDATE", "DELETE",
    "SUPERSEDED", "RUNNING", "SUCCEEDED", "FAILED", "BLOCKED", "ABANDONED", "LEASE_DURATION",
    "Base", "Run", "Item", "Flow", "Snapshot", "Watermark", "QuarantinedRow", "Validation", "deliveries",
    "FlowLease", "SchemaVersion", "utcnow", "LEDGER_CONN_ID", "default_ledger_url", "PlannedChange",
    "Ledger", "_make_engine",
]


def test_the_ledger_package_keeps_every_name_of_the_module():
    import ledgerlink.ledger as ledger

    assert [name for name in NAMES_OF_THE_MODULE if not hasattr(ledger, name)] == []
    assert isinstance(ledger.deliveries, sa.Table), "the deliveries table, not a submodule of that name"


def test_cli_summary_shows_a_blocked_intake_and_fails_unless_it_is_expected(ledger, capsys):
    from ledgerlink.ledger import BLOCKED

    ledger.start_run("r1", "bridge_usage_to_billing")
    ledger.finish_run("r1", "bridge_usage_to_billing", BLOCKED,
                      {"text": "files: 1 loaded, 1 refused\n  REFUSED cdr_BR04.csv -> error/cdr_BR04.csv: line 11"})
    assert cli.main(["summary"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED cdr_BR04.csv" in out and "run r1: BLOCKED" in out
    assert cli.main(["summary", "--expect-blocked", "bridge_usage_to_billing"]) == 0
    assert cli.main(["summary", "--expect-blocked", "billing_customers_to_onec"]) == 1
