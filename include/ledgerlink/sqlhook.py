"""SQL systems through Airflow's SQL hooks: ``PostgresHook`` for ``postgres`` connections, SQLite by path.

The base of the SQL systems' hooks (billing, ERP) and of the ledger's connection. Callers get a SQLAlchemy
engine on psycopg 3 (``postgresql+psycopg``): the bulk COPY paths and ADBC need it. ``PostgresHook`` picks
psycopg 3 itself on SQLAlchemy 2, but a connection's ``sqlalchemy_scheme`` extra would override that, so the
scheme is passed explicitly. The SQLite provider (``SqliteHook``) is not installed; a ``sqlite`` connection
names a file, and its URL is built here.
"""
from __future__ import annotations

import sqlalchemy as sa
from airflow.sdk import BaseHook
from sqlalchemy.engine import URL

from ledgerlink.connections import get_connection
from ledgerlink.errors import ConfigurationError

POSTGRES_SCHEME = "postgresql+psycopg"
POSTGRES_TYPES = ("postgres", "postgresql")


def postgres_hook(connection):
    """Airflow's ``PostgresHook`` over an already resolved connection, on psycopg 3."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=connection.conn_id, connection=connection,
                        sqlalchemy_scheme=POSTGRES_SCHEME)


def sqlalchemy_url(connection) -> URL:
    """An Airflow connection (``postgres`` or ``sqlite``) as a SQLAlchemy URL; the password stays in the object."""
    if connection.conn_type in POSTGRES_TYPES:
        return postgres_hook(connection).sqlalchemy_url
    if connection.conn_type == "sqlite":
        # Airflow parses sqlite:////abs/path.db into schema; the UI's form puts the path in host.
        path = "/".join(p for p in (connection.host, connection.schema) if p)
        if not path:
            raise ConfigurationError(f"connection {connection.conn_id!r} names no SQLite file")
        return URL.create("sqlite", database=path if path.startswith("/") else "/" + path)
    raise ConfigurationError(f"connection {connection.conn_id!r} has type {connection.conn_type!r}; "
                             f"expected one of {sorted((*POSTGRES_TYPES, 'sqlite'))}")


class SqlDatabaseHook(BaseHook):
    """A SQL system behind an Airflow connection; subclasses name it, ``get_engine`` does the rest."""

    conn_name_attr = "conn_id"
    default_conn_name = ""
    conn_type = "postgres"
    hook_name = "SQL database"
    secret_fields = ("password",)

    def __init__(self, conn_id: str | None = None):
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {"hidden_fields": [], "relabeling": {"schema": "Database"},
                "placeholders": {"host": "PostgreSQL host, or the SQLite file's path for type sqlite"}}

    def get_engine(self) -> sa.Engine:
        connection = get_connection(self.conn_id)
        if connection.conn_type in POSTGRES_TYPES:
            return postgres_hook(connection).get_sqlalchemy_engine()
        return sa.create_engine(sqlalchemy_url(connection))
