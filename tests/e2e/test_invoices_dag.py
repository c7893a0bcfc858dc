"""billing_invoices_to_onec run by Airflow itself (`airflow dags test`) against the sandbox world, in either order
with the customers flow: run first, every invoice is held back naming its missing counterparty and the run
succeeds; once the counterparties are in 1C, the next run posts every issued invoice; a rerun sends nothing; the
history names each invoice's OData requests."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from ledgerlink.ledger import Ledger
from tests.e2e.test_airflow_dags import REPO, _dags_test

pytestmark = pytest.mark.slow
FLOW = "billing_invoices_to_onec"


def _issued(world) -> set[str]:
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        return {row[0] for row in db.execute("SELECT invoice_id FROM invoices "
                                             "WHERE status NOT IN ('cancelled', 'draft')")}


def test_invoices_wait_for_their_counterparties_then_go_once(world):
    ledger = Ledger(f"sqlite:///{world['home'] / 'ledger.db'}")
    early = _dags_test(world, FLOW)
    assert early.returncode == 0, early.stdout[-4000:] + early.stderr[-4000:]
    held = {q["source_key"]: q["reasons"] for q in ledger.quarantined(flow=FLOW)}
    assert set(held) == _issued(world) and all("not in 1C yet" in reason for reason in held.values())

    customers = _dags_test(world, "billing_customers_to_onec")
    assert customers.returncode == 0, customers.stdout[-4000:]
    night = _dags_test(world, FLOW)
    assert night.returncode == 0, night.stdout[-4000:] + night.stderr[-4000:]
    summary = json.loads(ledger.runs(flow=FLOW)[-1]["summary"])
    assert summary["created"] == len(_issued(world)) and summary["reconciliation"] == []
    password = json.loads(world["env"]["AIRFLOW_CONN_ONEC_DEFAULT"])["password"]
    assert password not in night.stdout + night.stderr, "a connection secret reached the log"

    again = _dags_test(world, FLOW)
    assert again.returncode == 0 and json.loads(ledger.runs(flow=FLOW)[-1]["summary"])["sent"] == 0

    history = subprocess.run([sys.executable, "-m", "ledgerlink", "history", "--target", "onec", "--entity",
                              "invoice", "--json"], env=world["env"], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
    assert history.returncode == 0, history.stderr[-2000:]
    rows = [r for r in json.loads(history.stdout) if r["result"] == "acknowledged (create)"]
    assert {r["what"] for r in rows} == _issued(world)
    assert all("/Post" in r["via"] for r in rows)
