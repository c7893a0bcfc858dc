"""The Airflow hook for the ERP database (connection ``erp_default``)."""
from __future__ import annotations

from ledgerlink.sqlhook import SqlDatabaseHook


class ErpHook(SqlDatabaseHook):
    default_conn_name = "erp_default"
    hook_name = "ERP database"
