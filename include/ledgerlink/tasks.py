"""Glue between Airflow tasks and Ledgerlink's plain functions: run ids, error kinds, connections.

Terminal errors become ``AirflowFailException`` (no retry); transient ones propagate, and Airflow retries
them with exponential backoff.
"""
from __future__ import annotations

import functools
import logging
from datetime import timedelta

log = logging.getLogger(__name__)

DEFAULT_ARGS = {
    "owner": "ledgerlink",
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def fail_fast_on_terminal(step):
    """Wrap a task body: terminal errors fail the task at once, with our message."""

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        from airflow.sdk.exceptions import AirflowFailException

        from ledgerlink.errors import TerminalError

        try:
            return step(*args, **kwargs)
        except TerminalError as e:
            log.error("%s", e)
            raise AirflowFailException(str(e)) from e

    return wrapper


def current_run_id() -> str:
    from airflow.sdk import get_current_context

    return get_current_context()["run_id"]


def billing_engine(conn_id: str = "billing_default"):
    from ledgerlink.billing.hook import BillingHook

    return BillingHook(conn_id).get_engine()


def onec_client(conn_id: str = "onec_default"):
    from ledgerlink.onec.hook import OneCODataHook

    return OneCODataHook(conn_id).get_conn()


def ledger():
    from ledgerlink.ledger import Ledger

    return Ledger()


def erp_engine(conn_id: str = "erp_default"):
    from ledgerlink.erp.hook import ErpHook

    return ErpHook(conn_id).get_engine()
