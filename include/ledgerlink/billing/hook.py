"""The Airflow hook for the billing database (connection ``billing_default``)."""
from __future__ import annotations

from ledgerlink.sqlhook import SqlDatabaseHook


class BillingHook(SqlDatabaseHook):
    default_conn_name = "billing_default"
    hook_name = "Billing database"
