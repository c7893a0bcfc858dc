"""The SQL systems' hooks: an Airflow connection becomes an engine through Airflow's PostgresHook (psycopg 3)
or, for ``sqlite``, a file path. Real PostgreSQL: tests/integration/test_sql_hooks_postgres.py."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from ledgerlink import tasks
from ledgerlink.billing.hook import BillingHook
from ledgerlink.erp.hook import ErpHook
from ledgerlink.errors import ConfigurationError
from ledgerlink.sqlhook import SqlDatabaseHook


def test_a_sqlite_connection_is_an_engine_on_its_file(tmp_path, monkeypatch):
    path = tmp_path / "billing.db"
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_DEFAULT", f"sqlite:///{path}")
    engine = tasks.billing_engine()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    assert engine.url.database == str(path) and path.exists()


def test_a_postgres_connection_goes_through_postgres_hook_on_psycopg_3(monkeypatch):
    # A connection's sqlalchemy_scheme extra would make PostgresHook pick psycopg2; the bulk paths need psycopg 3.
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DEFAULT", json.dumps({
        "conn_type": "postgres", "host": "erp.example", "port": 6432, "schema": "erp", "login": "loader",
        "password": "pw-secret", "extra": {"sqlalchemy_scheme": "postgresql+psycopg2"}}))
    seen = []
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    original = PostgresHook.get_sqlalchemy_engine
    monkeypatch.setattr(PostgresHook, "get_sqlalchemy_engine",
                        lambda self, engine_kwargs=None: seen.append(self) or original(self, engine_kwargs))
    engine = tasks.erp_engine()
    assert len(seen) == 1, "the engine comes from PostgresHook"
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    url = engine.url
    assert (url.host, url.port, url.database, url.username, url.password) == (
        "erp.example", 6432, "erp", "loader", "pw-secret")


def test_a_connection_of_another_type_is_refused_with_its_name(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_DEFAULT", "http://billing.example")
    with pytest.raises(ConfigurationError, match="'billing_default' has type 'http'"):
        BillingHook().get_engine()


def test_a_sqlite_connection_without_a_file_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_DEFAULT", json.dumps({"conn_type": "sqlite"}))
    with pytest.raises(ConfigurationError, match="names no SQLite file"):
        BillingHook().get_engine()


@pytest.mark.parametrize("hook, conn_id", [(BillingHook, "billing_default"), (ErpHook, "erp_default")])
def test_each_sql_hook_carries_airflows_connection_contract(hook, conn_id):
    assert hook.default_conn_name == conn_id
    assert hook.conn_type and hook.hook_name and hook.conn_name_attr
    assert "password" in hook.secret_fields
    behaviour = hook.get_ui_field_behaviour()
    assert set(behaviour) <= {"hidden_fields", "relabeling", "placeholders"} and behaviour["relabeling"]
    instance = hook()
    assert getattr(instance, hook.conn_name_attr) == conn_id


def test_the_sql_hooks_share_one_base():
    assert issubclass(BillingHook, SqlDatabaseHook) and issubclass(ErpHook, SqlDatabaseHook)

