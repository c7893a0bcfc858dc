"""Where the ledger lives and how its engine is tuned: SQLite by default, PostgreSQL (psycopg 3) by URL."""
from __future__ import annotations

import logging
import os

import sqlalchemy as sa

from ledgerlink import settings

log = logging.getLogger(__name__)

LEDGER_CONN_ID = "ledgerlink_ledger"


def default_ledger_url() -> str:
    """``LEDGERLINK_LEDGER_URL``, else the Airflow connection ``ledgerlink_ledger`` (environment, secrets backend or
    metadata database, as Airflow finds it), else SQLite in LEDGERLINK_HOME. Logs which, never the password."""
    if os.environ.get("LEDGERLINK_LEDGER_URL"):
        url, source = sa.make_url(os.environ["LEDGERLINK_LEDGER_URL"]), "LEDGERLINK_LEDGER_URL"
    else:
        from ledgerlink.connections import find_connection
        from ledgerlink.sqlhook import sqlalchemy_url

        connection = find_connection(LEDGER_CONN_ID)  # a source that fails raises: no silent SQLite ledger
        if connection is not None:
            url, source = sqlalchemy_url(connection), f"Airflow connection {LEDGER_CONN_ID!r}"
        else:
            url = sa.make_url(f"sqlite:///{settings.home() / 'ledger.db'}")
            source = f"the default: Airflow connection {LEDGER_CONN_ID!r} is not defined"
    log.info("ledger: %s (%s)", url.render_as_string(hide_password=True), source)
    return url.render_as_string(hide_password=False)


def _make_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg":
        # The bulk paths use psycopg 3's COPY; "postgresql://" alone would pick psycopg2.
        url = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (the CLI, the UI) don't block a running load
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = sa.create_engine(url, pool_pre_ping=True)
    if parsed.get_backend_name() == "postgresql":
        @sa.event.listens_for(engine, "connect")
        def _key_lookups_use_the_index(dbapi_connection, _record):
            # The ledger is read by key (a night's 10,000 changed lines out of 20 million). With the default
            # random_page_cost of 4 (spinning disks) PostgreSQL scans the whole snapshot instead of probing
            # its primary key; 1.1 is the usual value for SSD-backed servers.
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET random_page_cost = 1.1")
            dbapi_connection.commit()

    return engine
