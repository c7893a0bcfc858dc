"""The nightly sync as the scheduler runs it: `airflow standalone` (scheduler, dag-processor, api-server,
triggerer, LocalExecutor) picks up a triggered run of the ERP flow and runs it to success."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledgerlink.erp import invoice_lines as erp_lines

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "billing_invoice_lines_to_erp"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _airflow(env, *args) -> str:
    result = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _runs(env) -> list[dict]:
    out = _airflow(env, "dags", "list-runs", DAG_ID, "-o", "json")
    # Log lines ("[warning ...") may precede the JSON; the JSON is the line that parses.
    for line in reversed(out.splitlines()):
        if line.startswith("[{") or line.strip() == "[]":
            return json.loads(line)
    return []


def test_the_scheduler_runs_a_triggered_dag_to_success(world, tmp_path):
    api_port = _free_port()
    env = {**world["env"],
           "AIRFLOW__API__PORT": str(api_port),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}
    log = open(tmp_path / "standalone.log", "wb")
    standalone = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=env, cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _airflow(env, "dags", "reserialize")
        _airflow(env, "dags", "unpause", DAG_ID)
        _airflow(env, "dags", "trigger", DAG_ID)
        deadline = time.monotonic() + 420
        states = []
        while time.monotonic() < deadline:
            assert standalone.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            states = [run["state"] for run in _runs(env)]
            if states and all(state in ("success", "failed") for state in states):
                break
            time.sleep(5)
        assert states and all(state == "success" for state in states), \
            f"runs ended {states}; log tail:\n{(tmp_path / 'standalone.log').read_text()[-3000:]}"
    finally:
        os.killpg(standalone.pid, signal.SIGTERM)
        try:
            standalone.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(standalone.pid, signal.SIGKILL)
            standalone.wait(timeout=30)

    erp = sa.create_engine(f"sqlite:///{world['sandbox'] / 'erp.db'}")
    with sa.create_engine(f"sqlite:///{world['sandbox'] / 'billing.db'}").connect() as conn:
        lines = conn.scalar(sa.text("SELECT count(*) FROM invoice_lines"))
    assert erp_lines.count_loaded(erp) == lines
