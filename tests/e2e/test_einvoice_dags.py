"""The e-invoice DAGs run by Airflow itself (`airflow dags test`) against the sandbox world, with the primary
integrator failing on purpose: every invoice ends accepted at GİB exactly once, and neither integrator's secret
appears in any task log."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledgerlink.ledger import EInvoiceRegister, Ledger
from sandbox.httpbase import set_faults

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _dags_test(world, dag_id: str) -> subprocess.CompletedProcess:
    logical_date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date],
                          env=world["env"], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_billing_invoices_become_accepted_e_invoices_through_a_failing_primary(world):
    rest = json.loads(world["env"]["AIRFLOW_CONN_EINVOICE_REST_DEFAULT"])
    soap = json.loads(world["env"]["AIRFLOW_CONN_EINVOICE_SOAP_DEFAULT"])
    set_faults(f"http://{rest['host']}:{rest['port']}", [
        {"mode": "drop_after_apply", "count": 2, "methods": ["POST"]},
        {"mode": "error", "status": 503, "after": 2, "count": 5, "methods": ["POST"]}])
    outputs = []
    for dag_id in ("billing_einvoices", "billing_einvoices_status", "billing_einvoices_summary"):
        run = _dags_test(world, dag_id)
        outputs.append(run.stdout + run.stderr)
        assert run.returncode == 0, (dag_id, run.stdout[-4000:] + run.stderr[-4000:])
    assert "===== Ledgerlink: billing_einvoices =====" in outputs[0]
    assert "(failover)" in outputs[0] and "===== Ledgerlink: e-invoices" in outputs[2]

    register = EInvoiceRegister(Ledger(f"sqlite:///{world['home'] / 'ledger.db'}").engine)
    invoices = register.invoices()
    assert invoices and {i["state"] for i in invoices} == {"accepted"}
    with sqlite3.connect(world["sandbox"] / "gib.db") as db:
        at_gib = [row[0] for row in db.execute("SELECT uuid FROM invoices")]
        twice = db.execute("SELECT COUNT(*) FROM rejections WHERE code = 1163").fetchone()[0]
    assert sorted(at_gib) == sorted(i["ettn"] for i in invoices) and twice == 0
    assert sum(1 for i in invoices if i["carrier"] != i["primary_integrator"]) == 5

    logs = "".join(outputs) + "".join(p.read_text(errors="replace") for p in
                                      (Path(world["env"]["AIRFLOW_HOME"]) / "logs").rglob("*") if p.is_file())
    for secret in (rest["password"], soap["password"]):
        assert secret not in logs, "an integrator's secret reached a task log"
