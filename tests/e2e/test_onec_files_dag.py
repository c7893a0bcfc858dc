"""Issue 20's month-end file exchange run by Airflow itself (`airflow dags test`) against the sandbox: the
previous month's closing documents reach the 1C stand-in as one EnterpriseData message, 1C's answer acknowledges
them, and the summary says what was sent, acknowledged and held back; a second run sends nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG = "billing_invoices_to_onec_files"
pytestmark = pytest.mark.slow


def _run(world, *args: str, stdout_only: bool = False) -> str:
    result = subprocess.run([sys.executable, "-m", *args], env=world["env"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout if stdout_only else result.stdout + result.stderr


def test_the_previous_month_goes_to_1c_is_acknowledged_and_a_rerun_sends_nothing(world):
    log = _run(world, "airflow", "dags", "test", DAG, "2026-12-02T06:00:00+00:00")
    password = json.loads(world["env"]["AIRFLOW_CONN_ONEC_EXCHANGE_SFTP"])["password"]
    assert password not in log, "a connection secret reached the log"
    assert "message 1 (Message_BILLING_1C_000001.xml) for 2026-11" in log
    exchange = world["sandbox"] / "sftp" / "onec"
    assert (exchange / "processed" / "Message_BILLING_1C_000001.xml").exists(), "1C took the message"
    assert [p.name for p in (exchange / "registers").iterdir()] == ["Message_BILLING_1C_000001.register.xlsx"]
    runs = json.loads(_run(world, "ledgerlink", "runs", "--json", stdout_only=True))
    [run] = [r for r in runs if r["flow"] == DAG]
    summary = run["summary"]
    assert run["status"] == "succeeded" and summary["sent"] > 0
    assert summary["acknowledged"] == summary["sent"] and summary["awaiting_acknowledgement"] == 0

    again = _run(world, "airflow", "dags", "test", DAG, "2026-12-02T07:00:00+00:00")
    assert "no message for 2026-11: nothing new or changed" in again
    text = _run(world, "ledgerlink", "summary", "--check-targets", stdout_only=True)
    ours = text.split(f"===== Ledgerlink: {DAG} =====")[1].split("=====")[0]
    assert "acknowledged:" in ours and "check: 1C's answer confirms our messages up to 1" in ours
    assert "waiting: they agree" in ours
