"""The SQL hooks and the ledger's Airflow connection against a real PostgreSQL, through PostgresHook.

The throwaway cluster trusts local connections, so the connections carry a password it ignores: enough to
prove the password reaches the driver and never the log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from ledgerlink.billing.hook import BillingHook
from tests.support.pg import PgInfo, create_database, run_postgres

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw-never-logged"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> PgInfo:
    with run_postgres(tmp_path_factory.mktemp("pg")) as info:
        yield info


def connection_json(pg: PgInfo) -> str:
    return json.dumps({"conn_type": "postgres", "host": pg.host, "port": pg.port, "schema": pg.dbname,
                       "login": pg.user, "password": PASSWORD})


def test_billing_engine_from_postgres_hook_reads_the_database(postgres, monkeypatch):
    billing = create_database(postgres, "billing_hook")
    with psycopg.connect(billing.dsn) as conn:
        conn.execute("CREATE TABLE customers (id int)")
        conn.execute("INSERT INTO customers VALUES (1), (2)")
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_DEFAULT", connection_json(billing))
    engine = BillingHook().get_engine()
    assert engine.dialect.driver == "psycopg", "the bulk COPY paths and ADBC need psycopg 3"
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM customers")) == 2
    engine.dispose()


def test_the_ledger_writes_to_the_postgres_database_its_connection_names(postgres, tmp_path):
    ledger_db = create_database(postgres, "ledger_via_connection")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEDGERLINK"))}
    env.update({"PYTHONPATH": str(REPO / "include"), "AIRFLOW_HOME": str(tmp_path / "airflow"),
                "LEDGERLINK_HOME": str(tmp_path / "home"), "AIRFLOW_CONN_LEDGERLINK_LEDGER": connection_json(ledger_db)})
    script = ("from ledgerlink.ledger import Ledger, PlannedChange\n"
              "ledger = Ledger.migrated()\n"
              "assert ledger.engine.dialect.driver == 'psycopg'\n"
              "ledger.plan('probe-run', 'probe_flow', 'probe', 'thing', [PlannedChange('K-1', None, 'h', 'create')])\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert f"ledger: postgresql+psycopg://{ledger_db.user}:***@{ledger_db.host}:{ledger_db.port}/" in log
    assert PASSWORD not in log
    with psycopg.connect(ledger_db.dsn) as conn:
        assert conn.execute("SELECT source_key FROM items").fetchall() == [("K-1",)]
    assert not (tmp_path / "home" / "ledger.db").exists()
