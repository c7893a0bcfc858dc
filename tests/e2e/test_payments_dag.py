"""Issue 20's payments run by Airflow itself (`airflow dags test`) against the sandbox: billing's customers reach 1C,
1C imports the day's bank statement against them, and the payments DAG applies what matches and holds the rest;
a second run changes nothing."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _dags_test(world, dag_id: str) -> str:
    logical_date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date],
                            env=world["env"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def _receipts_imported(world) -> int:
    conn = json.loads(world["env"]["AIRFLOW_CONN_ONEC_DEFAULT"])
    request = urllib.request.Request(f"http://{conn['host']}:{conn['port']}/_sandbox/onec/bank/import", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["waiting"]


def _payments(world) -> list[tuple]:
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        return db.execute("SELECT payment_id, invoice_id, amount_minor FROM payments WHERE payment_id LIKE '1C-%' "
                          "ORDER BY payment_id").fetchall()


def test_bank_receipts_become_payments_and_the_rest_is_held_for_finance(world):
    _dags_test(world, "billing_customers_to_onec")
    deadline = time.monotonic() + 30
    while _receipts_imported(world) and time.monotonic() < deadline:  # every payer's counterparty is there now
        time.sleep(1)
    statement = json.loads((world["sandbox"] / "onec_bank_statement.json").read_text(encoding="utf-8"))
    log = _dags_test(world, "onec_payments_to_billing")
    assert "===== Ledgerlink: onec_payments_to_billing =====" in log
    matched = sum(line["id"].endswith("-matched") for line in statement)
    assert f"matched {matched}" in log and "acknowledged to 1C" in log
    password = json.loads(world["env"]["AIRFLOW_CONN_ONEC_DEFAULT"])["password"]
    assert password not in log, "a connection secret reached the log"
    payments = _payments(world)
    assert len(payments) == matched
    again = _dags_test(world, "onec_payments_to_billing")
    assert "sent: 0 (created 0" in again and _payments(world) == payments
