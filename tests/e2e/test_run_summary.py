"""Every run ends with the summary, in Airflow itself (`airflow dags test` against the sandbox world).

A failed upstream task still yields the summary block (the last task's trigger rule), the run stays failed, and
finance gets a mail through the SMTP connection (the sandbox's sink). The task logs land where the UI reads them.
"""
from __future__ import annotations

import email
import email.policy
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledgerlink.ledger import Ledger
from sandbox.httpbase import set_faults

REPO = Path(__file__).resolve().parents[2]
DAG = "billing_customers_to_onec"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(world):
    # As scripts/demo.sh runs it: `airflow dags test` writing task logs where the UI reads them.
    return {**world["env"], "LEDGERLINK_TASK_LOG_FILES": "1", "LEDGERLINK_FINANCE_EMAIL": "finance@example.test"}


def _dags_test(env, dag_id: str, conf: dict | None = None) -> subprocess.CompletedProcess:
    logical_date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date]
    if conf is not None:
        command += ["--conf", json.dumps(conf)]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def _onec_url(env) -> str:
    conn = json.loads(env["AIRFLOW_CONN_ONEC_DEFAULT"])
    return f"http://{conn['host']}:{conn['port']}"


def _task_log(env, run_id: str, task_id: str) -> str:
    """The task's log as the Airflow UI serves it: read through Airflow's own task log reader."""
    code = (
        "import sys, json\n"
        "from sqlalchemy import select\n"
        "from airflow.models import TaskInstance\n"
        "from airflow.utils.log.log_reader import TaskLogReader\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as session:\n"
        f"    ti = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == {DAG!r},\n"
        f"        TaskInstance.run_id == {run_id!r}, TaskInstance.task_id == {task_id!r})).one()\n"
        "    logs, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {})\n"
        "    print('\\n'.join(getattr(m, 'event', str(m)) for m in logs))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_good_run_ends_with_the_summary_in_a_task_log_the_ui_reads(world, env):
    run = _dags_test(env, DAG)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    ledger = Ledger(f"sqlite:///{world['home'] / 'ledger.db'}")
    run_id = ledger.runs(flow=DAG)[-1]["run_id"]
    summary_log = _task_log(env, run_id, "summary")
    assert "===== Ledgerlink: billing_customers_to_onec =====" in summary_log
    assert f"run: {run_id} | SUCCEEDED" in summary_log and "next: nothing waits" in summary_log
    load_log = _task_log(env, run_id, "load")
    assert "Loaded into 1C" in load_log, "the load task's own lines are in its log too"
    assert "urllib3" not in load_log and "Starting new HTTP connection" not in load_log, "library noise quieted"
    gate_log = _task_log(env, run_id, "gate")
    assert "Gate customer: 40 rows" in gate_log and "ephemeral docs site" not in gate_log, "GX's INFO chatter quieted"
    assert _asset_extras(env, "onec_counterparties")[-1] == {"run_id": run_id, "created": 40, "updated": 0,
                                                              "deleted": 0, "already_in_target": 0, "rejected": 0,
                                                              "held_back": 0, "dry_run": False}


def _asset_extras(env, name: str) -> list[dict]:
    """The extras of an Asset's events, oldest first, from Airflow's metadata database."""
    code = (
        "import json\n"
        "from sqlalchemy import select\n"
        "from airflow.models.asset import AssetEvent, AssetModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as session:\n"
        "    events = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)\n"
        f"        .where(AssetModel.name == {name!r}).order_by(AssetEvent.id)).all()\n"
        "    print(json.dumps([e.extra for e in events]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_dry_run_sends_nothing(world, env):
    ledger = Ledger(f"sqlite:///{world['home'] / 'ledger.db'}")
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        victim = db.execute("SELECT min(customer_id) FROM customers").fetchone()[0]
        db.execute("UPDATE customers SET legal_name = legal_name || ' (dry)', updated_at = ? WHERE customer_id = ?",
                   ("2030-01-01T00:00:00+00:00", victim))
    items = len(ledger.items())
    run = _dags_test(env, DAG, {"dry_run": True, "customer": victim})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "would send: 1 (created 0, updated 1)" in output and "dry run: nothing was sent" in output
    assert len(ledger.items()) == items, "a dry run records nothing as planned or sent"


def test_an_upstream_failure_still_ends_with_the_summary_fails_the_run_and_mails_finance(world, env):
    mail = world["sandbox"] / "mail"
    mails_before = set(mail.glob("*.eml")) if mail.exists() else set()
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        victim = db.execute("SELECT max(customer_id) FROM customers").fetchone()[0]
        db.execute("UPDATE customers SET legal_name = legal_name || ' (moved)', updated_at = ? "
                   "WHERE customer_id = ?", ("2030-01-02T00:00:00+00:00", victim))
    # 1C refuses Ledgerlink's credentials: the load fails at once (no retry can cure it), the rest is upstream_failed.
    set_faults(_onec_url(env), [{"mode": "error", "status": 401, "count": 1000}])
    try:
        run = _dags_test(env, DAG)
    finally:
        set_faults(_onec_url(env), [])
    output = run.stdout + run.stderr
    (world["home"] / "failed-run.log").write_text(output)
    assert run.returncode != 0, "the run is failed, not green because its last task ran"

    ledger = Ledger(f"sqlite:///{world['home'] / 'ledger.db'}")
    last = ledger.runs(flow=DAG)[-1]
    assert last["status"] == "failed"
    summary_log = _task_log(env, last["run_id"], "summary")
    assert "===== Ledgerlink: billing_customers_to_onec =====" in summary_log
    assert f"run: {last['run_id']} | FAILED" in summary_log
    assert "why it stopped:" in summary_log and "refused Ledgerlink's credentials (HTTP 401)" in summary_log
    assert "nothing is lost" in summary_log
    password = json.loads(env["AIRFLOW_CONN_ONEC_DEFAULT"])["password"]
    assert password not in output and password not in summary_log

    new_mail = sorted(set(mail.glob("*.eml")) - mails_before)
    assert new_mail, "no failure mail reached the SMTP sink"
    message = email.message_from_bytes(new_mail[-1].read_bytes(), policy=email.policy.default)
    assert message["Subject"].startswith(f"Ledgerlink: {DAG} run ") and "did not succeed" in message["Subject"]
    assert "finance@example.test" in message["To"]
    body = message.get_body(("html", "plain")).get_content()
    assert "===== Ledgerlink: billing_customers_to_onec =====" in body and password not in body
