"""Inside a task, the ledger finds ``ledgerlink_ledger`` in the metadata database (the UI's connections).

A task asks through the Task SDK, which reaches the metadata database only through the API server; run by
``airflow dags test`` here. The CLI's path and the other sources: tests/unit/ledgerlink/test_ledger_connection.py.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE_DAG = '''
from airflow.sdk import dag, task


@dag(schedule=None, tags=["test"])
def ledger_connection_probe():
    @task
    def plan_one_item():
        from airflow.sdk.execution_time import task_runner

        from ledgerlink.ledger import Ledger, PlannedChange

        assert task_runner.SUPERVISOR_COMMS is not None, "a task run by the Task SDK"
        Ledger.migrated().plan("probe-run", "probe_flow", "probe", "thing", [PlannedChange("K-1", None, "h", "create")])

    plan_one_item()


ledger_connection_probe()
'''


@pytest.mark.slow
def test_a_task_finds_the_ledger_connection_in_the_metadata_database(tmp_path):
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "probe.py").write_text(PROBE_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEDGERLINK"))}
    env.update({"PYTHONPATH": str(REPO / "include"), "AIRFLOW_HOME": str(tmp_path / "airflow"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "LEDGERLINK_HOME": str(tmp_path / "home")})
    ledger_file = tmp_path / "via-metastore.db"

    def airflow(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return done.stdout + done.stderr

    airflow("db", "migrate")
    airflow("connections", "add", "ledgerlink_ledger", "--conn-uri", f"sqlite:///{ledger_file}")
    log = airflow("dags", "test", "ledger_connection_probe")

    assert "Airflow connection 'ledgerlink_ledger'" in log
    with sqlite3.connect(ledger_file) as db:
        assert [key for (key,) in db.execute("SELECT source_key FROM items")] == ["K-1"]
    assert not (tmp_path / "home" / "ledger.db").exists(), "no SQLite ledger of the worker's own"
