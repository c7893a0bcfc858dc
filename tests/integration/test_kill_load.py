"""SIGKILL the load task half-way (a real process, killed for real), rerun it: the ERP is exactly right.

The ledger shows the chunk that was in flight when the process died as sent, then its second attempt, and
one delivery per line (lines are never items; chunks are rows of their own)
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from devtools.pg import create_database, run_postgres
from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import ACKNOWLEDGED, Ledger, describe_chunk
from sandbox.generator import generate_billing

REPO = Path(__file__).resolve().parents[2]

LOAD_UNTIL_KILLED = """
import json, sys, time
from pathlib import Path
import sqlalchemy as sa
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger

meta_path, erp_url, ledger_url, ready = sys.argv[1:5]
real_upsert = flow.upsert_frame
calls = {"n": 0}

def upsert_then_hang(*args, **kwargs):
    written = real_upsert(*args, **kwargs)
    calls["n"] += 1
    if calls["n"] == 2:  # chunk 2 is committed in the ERP but not yet acknowledged in the ledger
        Path(ready).write_text("committed")
        time.sleep(600)
    return written

flow.upsert_frame = upsert_then_hang
from ledgerlink.flows.state import RunState
flow.load(RunState.from_xcom(json.loads(Path(meta_path).read_text())), sa.create_engine(erp_url), Ledger(ledger_url))
"""


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with run_postgres(tmp_path_factory.mktemp("pg")) as info:
        yield info


@pytest.fixture(params=["sqlite", "postgres"])
def erp_and_ledger_urls(request, tmp_path):
    """SQLite writes the ledger after the ERP's commit; PostgreSQL writes it alongside, in a thread, and commits
    after the ERP: the kill then finds the ledger's transaction open, and the server rolls it back."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'erp.db'}", f"sqlite:///{tmp_path / 'ledger.db'}"
    server = request.getfixturevalue("postgres")
    return create_database(server, "killed_erp").url, create_database(server, "killed_ledger").url


def test_sigkill_half_way_then_rerun(tmp_path, monkeypatch, erp_and_ledger_urls):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    generate_billing(tmp_path / "billing.db", seed=11, customers=12)
    billing = sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    erp_url, ledger_url = erp_and_ledger_urls
    erp, ledger = sa.create_engine(erp_url), Ledger.migrated(ledger_url)
    meta = flow.gate(flow.extract("nightly", billing, ledger, chunk_rows=25), ledger)
    assert len(meta.batch) >= 4
    meta_path, ready = tmp_path / "meta.json", tmp_path / "ready"
    meta_path.write_text(json.dumps(meta.to_xcom()))

    env = {**os.environ, "PYTHONPATH": str(REPO / "include"), "LEDGERLINK_HOME": str(tmp_path / "home")}
    process = subprocess.Popen([sys.executable, "-c", LOAD_UNTIL_KILLED, str(meta_path), erp_url, ledger_url,
                                str(ready)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the load never reached its second chunk"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    in_flight = [c for c in ledger.chunks(flow=flow.FLOW) if c["status"] == "sent"]
    assert [(c["run_id"], c["chunk_index"], c["attempts"]) for c in in_flight] == [("nightly", 1, 1)], \
        "the killed attempt left its second chunk sent and unacknowledged"
    second_chunk = in_flight[0]["id"]
    assert [c["what"] for c in ledger.planned()] == [describe_chunk(in_flight[0])]
    assert describe_chunk(in_flight[0]).startswith("chunk 2 of run nightly: 25 lines, sent at ")
    acknowledged_before = {c["id"] for c in ledger.chunks(flow=flow.FLOW) if c["status"] == ACKNOWLEDGED}
    assert acknowledged_before == {c["id"] for c in ledger.chunks(flow=flow.FLOW) if c["chunk_index"] == 0}

    # Airflow's retry runs the same task again with the same input.
    summary = flow.reconcile_and_report(flow.load(meta, erp, ledger), billing, erp, ledger)
    assert summary.reconciliation == []

    columns = [c for c in erp_lines.COLUMNS if c != "content_hash"]
    select = ", ".join(f"i.{c}" if c in ("customer_id", "issue_date") else f"l.{c}" for c in columns)
    with sqlite3.connect(tmp_path / "billing.db") as db:
        source = sorted(db.execute(f"SELECT {select} FROM invoice_lines l JOIN invoices i USING (invoice_id)"))
    with erp.connect() as conn:
        target = sorted(tuple(row) for row in conn.execute(
            sa.text(f"SELECT {', '.join(columns)} FROM {erp_lines.TABLE}")))
    assert source == target

    assert ledger.items(flow=flow.FLOW) == [], "lines are never items, and chunks are rows of their own"
    chunks = {c["id"]: c for c in ledger.chunks(flow=flow.FLOW)}
    lines = ledger.deliveries(flow=flow.FLOW)
    assert len(lines) == len({d["source_key"] for d in lines}) == len(source), \
        "one delivery per line: the retry did not send the acknowledged chunk again"
    assert all(c["status"] == ACKNOWLEDGED and c["attempts"] == 1 for id_, c in chunks.items() if id_ != second_chunk)
    assert chunks[second_chunk]["status"] == ACKNOWLEDGED and chunks[second_chunk]["attempts"] == 2
    assert sorted(c["chunk_index"] for c in chunks.values()) == list(range(len(meta.batch)))
    assert acknowledged_before <= set(chunks)
    assert {d["chunk_id"] for d in lines} <= set(chunks), "every line belongs to a chunk"
    assert ledger.planned() == []
