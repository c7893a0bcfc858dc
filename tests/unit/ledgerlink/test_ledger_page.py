"""The Exchange ledger page's parts that need no Airflow server: importing the plugin does nothing, reports are
served only from LEDGERLINK_HOME/reports, held-back rows read in major units. (tests/e2e/test_ledger_page_api.py
and test_ledger_page_browser.py test it as Airflow serves it.)"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ledgerlink.ui import app as ui
from ledgerlink.ui import queries

REPO = Path(__file__).resolve().parents[3]


def test_importing_the_plugin_opens_no_connection_and_touches_no_file(tmp_path):
    home = tmp_path / "home-not-made"
    code = ("import sys, ledgerlink.airflow_plugin as p\n"
            "apps = p.LedgerlinkPlugin.fastapi_apps\n"
            "assert [a['url_prefix'] for a in apps] == ['/ledgerlink'], apps\n"
            "assert 'ledgerlink.billing.hook' not in sys.modules and 'ledgerlink.ui.app' not in sys.modules\n"
            "assert 'ledgerlink.ledger' not in sys.modules\n")
    env = {**os.environ, "LEDGERLINK_HOME": str(home), "PYTHONPATH": str(REPO / "include"),
           "AIRFLOW_CONN_BILLING_DEFAULT": "postgres://u:p@127.0.0.1:9/nothing-listens"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not home.exists(), "importing the plugin created LEDGERLINK_HOME"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    run = tmp_path / "home" / "reports" / "flow" / "run"
    run.mkdir(parents=True)
    (run / "reconciliation.xlsx").write_bytes(b"PK")
    (run / "notes.txt").write_text("not a report type")
    (tmp_path / "home" / "ledger.db").write_text("the ledger")
    (tmp_path / "outside.xlsx").write_bytes(b"PK outside")
    (run / "link.xlsx").symlink_to(tmp_path / "outside.xlsx")
    return tmp_path / "home"


def test_a_report_inside_the_reports_folder_is_served_as_a_download(home):
    served = ui.served_file("reports/flow/run/reconciliation.xlsx")
    assert served["path"] == (home / "reports/flow/run/reconciliation.xlsx").resolve()
    assert served["filename"] == "flow-run-reconciliation.xlsx"


@pytest.mark.parametrize("path", ["ledger.db", "../outside.xlsx", "reports/../ledger.db", "/etc/passwd",
                                  "reports/flow/run/link.xlsx", "reports/flow/run/notes.txt", "reports/flow/run",
                                  "reports/flow/run/missing.xlsx", "reports/flow/run/\x00.xlsx"])
def test_anything_else_is_not_found(home, path):
    with pytest.raises(FileNotFoundError):
        ui.served_file(path)


def test_report_paths_outside_home_are_not_offered(home, tmp_path):
    assert queries.report_path(str(home / "reports/flow/run/reconciliation.xlsx"), home) == \
        "reports/flow/run/reconciliation.xlsx"
    assert queries.report_path(str(tmp_path / "outside.xlsx"), home) is None
    assert queries.report_path(str(home / "reports/flow/run/gone.xlsx"), home) is None


def test_a_held_back_row_reads_in_major_units_of_its_currency():
    row = queries.readable_row('{"line_id": "L1", "currency": "TRY", "net_minor": 123456, "vat_minor": "x", '
                               '"gross_minor": -5, "vat_rate": "20"}')
    assert row == {"line_id": "L1", "currency": "TRY", "net": "1234.56", "vat_minor": "x", "gross": "-0.05",
                   "vat_rate": "20"}
    assert queries.readable_row("not json") == {"row": "not json"}


def test_links_name_the_dag_run_and_the_task_that_did_the_step():
    assert queries.links("billing_invoice_lines_to_erp:invoice_headers", "manual__2026-01-01T00:00:00+00:00", "line") == {
        "dag_run": "dags/billing_invoice_lines_to_erp/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00",
        "task_log": "dags/billing_invoice_lines_to_erp/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/load"}
    assert queries.links("bridge_usage_to_billing", "r/1", "run")["task_log"].endswith("r%2F1/tasks/take_files")
    assert queries.links("x", None, "run") == {}


def test_runs_page_through_runs_that_started_in_the_same_second_once_each(tmp_path):
    import sqlalchemy as sa

    from ledgerlink.ledger import Ledger, Run

    ledger = Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")
    same = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)
    with ledger.engine.begin() as conn:
        conn.execute(sa.insert(Run), [{"run_id": f"r{n}", "flow": f"flow{n % 2}", "started_at": same,
                                       "status": "succeeded", "summary": "{}"} for n in range(5)]
                     + [{"run_id": "older", "flow": "flow0", "started_at": same - timedelta(hours=1),
                         "status": "failed", "summary": "not json"}])
    seen, before = [], None
    while True:
        page = queries.runs(ledger.engine, tmp_path, before=before, limit=2)
        seen += [(r["flow"], r["run_id"]) for r in page["runs"]]
        if page["next"] is None:
            break
        before = page["next"]
    assert len(seen) == 6 and len(set(seen)) == 6 and seen[-1] == ("flow0", "older")
    assert [r["run_id"] for r in queries.runs(ledger.engine, tmp_path, status="failed")["runs"]] == ["older"]


def test_a_name_search_takes_percent_and_underscore_literally(tmp_path):
    import sqlalchemy as sa

    from ledgerlink.ledger import Ledger

    ledger = Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")
    billing = sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    with billing.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (customer_id TEXT, legal_name TEXT, tax_id TEXT)"))
        conn.execute(sa.text("CREATE TABLE invoices (invoice_id TEXT, customer_id TEXT, number TEXT, issue_date TEXT)"))
        conn.execute(sa.text("INSERT INTO customers VALUES ('C1', 'Acme 100% Ltd', '1'), ('C2', 'Beta Ltd', '2'),"
                             " ('C3', 'Gamma_Co', '3'), ('C4', 'GammaXCo', '4')"))
    keys = lambda q: [m["key"] for m in queries.search(ledger.engine, q, billing=lambda: billing)["matches"]]  # noqa: E731
    assert keys("100%") == ["C1"]
    assert keys("%%%") == []
    assert keys("Gamma_") == ["C3"]
    assert keys("beta") == ["C2"]
    down = queries.search(ledger.engine, "beta", billing=lambda: (_ for _ in ()).throw(RuntimeError("down")))
    assert down["matches"] == [] and down["notes"] == [
        "billing could not be asked (RuntimeError): names, tax ids and amounts not shown"]
