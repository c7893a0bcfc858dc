"""A SQLAlchemy engine from an Airflow Connection (sqlite or postgres): the base of the SQL systems' hooks."""
from __future__ import annotations

import sqlalchemy as sa
from airflow.sdk import BaseHook

from ledgerlink.connections import sqlalchemy_url_from_connection


class SqlDatabaseHook(BaseHook):
    """Subclasses name their connection; ``get_engine`` does the rest."""

    conn_name_attr = "conn_id"
    default_conn_name = ""
    conn_type = "postgres"
    secret_fields = ("password",)

    def __init__(self, conn_id: str | None = None):
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name

    def get_engine(self) -> sa.Engine:
        return sa.create_engine(sqlalchemy_url_from_connection(self.conn_id))
