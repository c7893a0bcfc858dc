"""Airflow Connections to SQLAlchemy URLs. Secrets stay inside the URL object, never in a log line."""
from __future__ import annotations

from sqlalchemy.engine import URL

from ledgerlink.errors import ConfigurationError

DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "sqlite": "sqlite"}


def get_connection(conn_id: str):
    from airflow.sdk import BaseHook  # looked up at run time: connections live in Airflow

    return BaseHook.get_connection(conn_id)


def sqlalchemy_url_from_connection(conn_id: str) -> URL:
    """An Airflow connection (sqlite or postgres) as a SQLAlchemy URL."""
    connection = get_connection(conn_id)
    driver = DRIVERS.get(connection.conn_type or "")
    if driver is None:
        raise ConfigurationError(f"connection {conn_id!r} has type {connection.conn_type!r}; "
                                 f"expected one of {sorted(DRIVERS)}")
    if driver == "sqlite":
        # Airflow parses sqlite:////abs/path.db into schema (and host for relative forms).
        path = "/".join(p for p in (connection.host, connection.schema) if p) or ""
        if not path:
            raise ConfigurationError(f"connection {conn_id!r} names no SQLite file")
        return URL.create("sqlite", database=path if path.startswith("/") else "/" + path)
    return URL.create(driver, username=connection.login or None, password=connection.password or None,
                      host=connection.host or None, port=connection.port or None,
                      database=connection.schema or None)
