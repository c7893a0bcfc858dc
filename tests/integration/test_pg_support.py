"""The throwaway PostgreSQL cluster, and the demo generator writing into it."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from devtools.pg import PgInfo, create_database, run_postgres
from sandbox.generator import (
    BILLING_TABLES,
    ERP_TABLES,
    generate_billing,
    generate_billing_postgres,
    generate_erp,
    mutate_billing,
)

CUSTOMERS = 25


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> PgInfo:
    with run_postgres(tmp_path_factory.mktemp("pg")) as info:
        yield info


def _dump_postgres(dsn: str, tables=BILLING_TABLES) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn) as connection:
        return {table.name: sorted(connection.execute(f"SELECT * FROM {table.name}").fetchall(), key=repr)
                for table in tables}


def _dump_sqlite(path: Path, tables=BILLING_TABLES) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as connection:
        return {table.name: sorted(connection.execute(f"SELECT * FROM {table.name}").fetchall(), key=repr)
                for table in tables}


def test_server_listens_on_loopback_with_trust_auth(postgres):
    assert postgres.host == "127.0.0.1" and postgres.port > 1024
    assert postgres.dsn == f"postgresql://postgres@127.0.0.1:{postgres.port}/ledgerlink"
    with psycopg.connect(postgres.dsn) as connection:
        settings = dict(connection.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'listen_addresses')").fetchall())
    assert settings == {"fsync": "off", "listen_addresses": "127.0.0.1"}
    engine = sqlalchemy.create_engine(postgres.url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT current_database()")).scalar() == "ledgerlink"
    finally:
        engine.dispose()


def test_generated_billing_in_postgres_matches_sqlite(postgres, tmp_path):
    target = create_database(postgres, "billing_match")
    counts = generate_billing(target.url, seed=42, customers=CUSTOMERS)
    sqlite_counts = generate_billing(tmp_path / "billing.db", seed=42, customers=CUSTOMERS)
    assert counts == sqlite_counts
    in_postgres = _dump_postgres(target.dsn)
    assert {name: len(rows) for name, rows in in_postgres.items()} == counts
    assert in_postgres == _dump_sqlite(tmp_path / "billing.db")
    with psycopg.connect(target.dsn) as connection:
        indexes = {row[0] for row in connection.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {"ix_invoice_lines_updated_at", "ix_invoice_lines_invoice_id", "ix_usage_started_at"} <= indexes

    mutated = mutate_billing(target.dsn, seed=42, changed_fraction=0.05, deleted=2, added=3)
    assert mutated == mutate_billing(tmp_path / "billing.db", seed=42, changed_fraction=0.05, deleted=2, added=3)
    assert _dump_postgres(target.dsn) == _dump_sqlite(tmp_path / "billing.db")


def test_generated_erp_in_postgres_matches_sqlite(postgres, tmp_path):
    target = create_database(postgres, "erp_match")
    counts = generate_erp(target.dsn, seed=42, customers=CUSTOMERS)
    assert counts == generate_erp(tmp_path / "erp.db", seed=42, customers=CUSTOMERS)
    assert _dump_postgres(target.dsn, ERP_TABLES) == _dump_sqlite(tmp_path / "erp.db", ERP_TABLES)


def test_invoice_lines_scale_knob_in_postgres(postgres):
    target = create_database(postgres, "billing_scale")
    counts = generate_billing_postgres(target.dsn, seed=1, customers=10, usage_rows=500, invoice_lines=20_000)
    with psycopg.connect(target.dsn) as connection:
        assert connection.execute("SELECT COUNT(*) FROM invoice_lines").fetchone()[0] == 20_000
        assert connection.execute("SELECT COUNT(*) FROM usage").fetchone()[0] == 500
        assert connection.execute("""
            SELECT COUNT(*) FROM invoices i JOIN (SELECT invoice_id, SUM(gross_minor) gross FROM invoice_lines
            GROUP BY invoice_id) l USING (invoice_id) WHERE l.gross <> i.gross_minor""").fetchone()[0] == 0
    assert counts["invoice_lines"] == 20_000


def test_missing_binaries_skip_locally_and_fail_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr("devtools.pg.find_server_binaries", lambda: None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        with run_postgres(tmp_path):
            pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide"):
        with run_postgres(tmp_path):
            pass
