"""The first exchange run by Airflow itself (`airflow dags test`) against the sandbox world.

Counterparties in 1C equal the billing customers; a second run changes nothing; a broken batch is
blocked by the gate and nothing of it reaches 1C.
"""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ledgerlink.ledger import Ledger
from ledgerlink.onec import counterparties
from ledgerlink.onec.client import ODataClient

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _dags_test(world, dag_id: str) -> subprocess.CompletedProcess:
    logical_date = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date],
                          env=world["env"], cwd=REPO, capture_output=True, text=True, timeout=600)


def _client(world) -> ODataClient:
    import json

    conn = json.loads(world["env"]["AIRFLOW_CONN_ONEC_DEFAULT"])
    return ODataClient(f"http://{conn['host']}:{conn['port']}{conn['extra']['base']}", conn["login"], conn["password"])


def _customers(world) -> dict[str, tuple]:
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        return {row[0]: row for row in db.execute("SELECT customer_id, legal_name, tax_id FROM customers")}


def _ledger(world) -> Ledger:
    return Ledger(f"sqlite:///{world['home'] / 'ledger.db'}")


def test_first_exchange_then_a_rerun_that_changes_nothing(world):
    first = _dags_test(world, "billing_customers_to_onec")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "===== Ledgerlink: billing_customers_to_onec =====" in first.stdout + first.stderr
    password = json.loads(world["env"]["AIRFLOW_CONN_ONEC_DEFAULT"])["password"]
    assert password not in first.stdout + first.stderr, "a connection secret reached the log"

    client = _client(world)
    in_onec = counterparties.read_ours(client)
    customers = _customers(world)
    assert sorted(in_onec["Code"]) == sorted(customers)
    assert len(set(in_onec["Ref_Key"])) == len(customers)
    for row in in_onec.to_dict("records"):
        _, legal_name, tax_id = customers[row["Code"]]
        # A Russian tax id in ИНН, any other in НалоговыйНомер (1C checks ИНН as a Russian number).
        held = (row["ИНН"], "") if row[counterparties.COUNTRY] == "RU" else ("", row["НалоговыйНомер"])
        assert (row["НаименованиеПолное"], "".join(held)) == (legal_name, tax_id)
        assert row["Ref_Key"] == counterparties.ref_key(row["Code"])

    ledger = _ledger(world)
    first_items = len(ledger.items(flow="billing_customers_to_onec"))
    assert first_items == len(customers)

    second = _dags_test(world, "billing_customers_to_onec")
    assert second.returncode == 0, second.stdout[-4000:]
    assert len(ledger.items(flow="billing_customers_to_onec")) == first_items, "the rerun sent something"
    assert len(counterparties.read_ours(client)) == len(customers)
    runs = ledger.runs(flow="billing_customers_to_onec")
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert '"sent": 0' in runs[-1]["summary"]


def test_a_broken_batch_is_blocked_by_the_gate(world):
    customers = _customers(world)
    victim = sorted(customers)[3]
    good_tax_id = customers[victim][2]
    broken_tax_id = good_tax_id[:-1] + str((int(good_tax_id[-1]) + 1) % 10)
    with sqlite3.connect(world["sandbox"] / "billing.db") as db:
        db.execute("UPDATE customers SET tax_id = ?, updated_at = ? WHERE customer_id = ?",
                   (broken_tax_id, "2026-11-22T09:00:00+00:00", victim))
    ledger = _ledger(world)
    items_before = len(ledger.items())

    run = _dags_test(world, "billing_customers_to_onec")
    output = run.stdout + run.stderr
    (world["home"] / "broken-batch-run.log").write_text(output)
    assert run.returncode != 0
    assert "tax id check digits valid" in output
    assert victim in output

    in_onec = counterparties.read_ours(_client(world))
    victim_in_onec = in_onec.set_index("Code").loc[victim]
    assert good_tax_id in (victim_in_onec["ИНН"], victim_in_onec["НалоговыйНомер"])
    assert len(ledger.items()) == items_before, "a blocked batch must plan nothing"
    failed = [v for v in ledger.validations(flow="billing_customers_to_onec") if not v["success"]]
    assert failed and Path(failed[-1]["report_html"]).exists()
    # The run ends "blocked" in the ledger (it once stayed "running" forever), and the flow is free again.
    last = ledger.runs(flow="billing_customers_to_onec")[-1]
    assert last["status"] == "blocked" and "tax id check digits valid" in last["summary"]
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM flow_leases").scalar() == 0
