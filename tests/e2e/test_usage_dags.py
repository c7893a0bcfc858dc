"""Issue 21 run by Airflow itself (`airflow dags test`) against the sandbox: the bridge's files become rated
invoices in billing (the broken file refused with its reason, the late one as an adjustment), and running every
DAG again changes nothing."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _dags_test(world, dag_id: str, logical_date: str, *, fails: bool = False) -> str:
    result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date],
                            env=world["env"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert (result.returncode != 0) == fails, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def _runs(world, flow: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "ledgerlink", "runs", "--flow", flow, "--json"], env=world["env"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def _documents(world) -> list[tuple]:
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        return db.execute("SELECT invoice_id, status, number, net_minor, vat_minor, gross_minor, updated_at "
                          "FROM invoices WHERE invoice_id LIKE 'U%' ORDER BY invoice_id").fetchall()


def test_the_bridge_drop_becomes_rated_invoices_and_a_rerun_changes_nothing(world):
    # the broken file is refused and the run ends blocked (the task fails, seen in Airflow), the others are taken
    intake = _dags_test(world, "bridge_usage_to_billing", "2026-12-02T06:00:00+00:00", fails=True)
    assert "files: 3 loaded (0 as corrections), 0 duplicate(s) skipped, 1 refused" in intake
    assert "bridge_usage_to_billing: 1 file(s) refused, nothing of them loaded (3 other file(s) loaded)" in intake
    assert [run["status"] for run in _runs(world, "bridge_usage_to_billing")] == ["blocked"]
    assert "REFUSED cdr_BR04_20261101.utf-8.csv" in intake and "line 11, field 'started_at'" in intake
    password = json.loads(world["env"]["AIRFLOW_CONN_BRIDGE_SFTP"])["password"]
    assert password not in intake, "a connection secret reached the log"
    bridge = world["sandbox"] / "sftp" / "bridge"
    assert "is not a time" in (bridge / "error" / "cdr_BR04_20261101.utf-8.csv.reason.txt").read_text()
    assert sorted(p.name for p in (bridge / "processed").iterdir() if p.suffix == ".csv") == [
        "cdr_BR01_20261101.utf-8.csv", "cdr_BR02_20261101.cp1251.csv", "cdr_BR03_20261031.utf-8.csv"]

    closing = _dags_test(world, "usage_rating_month_end", "2026-12-01T04:00:00+00:00")
    assert "usage for invoices already issued: adjusted, never changed" in closing
    documents = _documents(world)
    november = [d for d in documents if d[0].endswith("-202611")]
    october = [d for d in documents if "-202610" in d[0]]
    assert november and all(d[1] == "issued" and d[2] for d in november), "November's invoices issued, numbered"
    assert any(d[0].startswith("UA-") for d in october), "the late file's usage as adjustments to issued October"
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        for invoice_id, _, _, net, vat, gross, _ in documents:
            assert db.execute("SELECT SUM(net_minor), SUM(vat_minor), SUM(gross_minor) FROM invoice_lines "
                              "WHERE invoice_id = ?", (invoice_id,)).fetchone() == (net, vat, gross)

    _dags_test(world, "usage_rating_nightly", "2026-12-02T01:30:00+00:00")
    again = _dags_test(world, "usage_rating_month_end", "2026-12-01T05:00:00+00:00")
    assert "issued:" not in again.split("===== Ledgerlink: usage_rating_month_end")[-1].split("[ledgerlink")[0]
    assert _documents(world) == documents, "a rerun changes nothing"
