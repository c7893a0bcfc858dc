"""Glue between Airflow tasks and Ledgerlink's plain functions: run ids, error kinds, connections.

Terminal errors become ``AirflowFailException`` (no retry); transient ones propagate, and Airflow retries
them with exponential backoff.
"""
from __future__ import annotations

import functools
import logging
import os
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
    """Wrap a task body: terminal errors fail the task at once, with our message. A database refusing the
    connection for good (a wrong password, an unknown database) is one of them: Airflow's retries would only
    knock on the same door for half an hour."""

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        import sqlalchemy.exc
        from airflow.sdk.exceptions import AirflowFailException

        from ledgerlink.errors import TerminalError, database_refusal

        try:
            return step(*args, **kwargs)
        except TerminalError as e:
            log.error("%s", e)
            raise AirflowFailException(str(e)) from e
        except sqlalchemy.exc.OperationalError as e:
            refusal = database_refusal(e)
            if refusal is None:
                raise  # transient: Airflow retries
            log.error("%s", refusal)
            raise AirflowFailException(str(refusal)) from refusal

    return wrapper


def run_status_for(error: BaseException | None) -> str:
    """The ledger status of a run that stopped on this error: a blocked gate (or an intake that refused files) is
    'blocked', the rest 'failed'."""
    from ledgerlink.errors import FilesRefused, GateFailed
    from ledgerlink.ledger import BLOCKED, FAILED

    seen = error
    while seen is not None:  # AirflowFailException wraps ours
        if isinstance(seen, (GateFailed, FilesRefused)):
            return BLOCKED
        seen = seen.__cause__
    return FAILED


def close_run_on_failure(flow: str):
    """An Airflow failure callback (task or DAG level) that ends the flow's run in the ledger with its status
    and reason, and releases the flow's lease: a run that failed, was blocked or was killed never stays
    'running'. It never raises: a callback's error would hide the task's own."""

    def callback(context) -> None:
        try:
            run_id = context["run_id"] if "run_id" in context else context["dag_run"].run_id
            error = context.get("exception")
            reason = f"{type(error).__name__}: {error}" if error is not None else \
                str(context.get("reason") or "a task of the run failed")
            task = context.get("task_instance") or context.get("ti")
            where = f"task {task.task_id}: " if task is not None and getattr(task, "task_id", None) else ""
            if ledger().end_run_early(run_id, flow, run_status_for(error), where + reason):
                log.info("Run %s of %s closed as %s in the ledger", run_id, flow, run_status_for(error))
        except Exception:  # noqa: BLE001 - logged with its traceback; the task's own failure stands
            log.exception("Could not close run of %s in the ledger", flow)

    return callback


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


def einvoice_clients(routing=None) -> dict:
    """Every integrator of the e-invoice routing, by name, each on its own Airflow connection."""
    from ledgerlink.einvoice.hook import EInvoiceIntegratorHook
    from ledgerlink.einvoice.routing import load_routing

    routing = routing or load_routing(os.environ.get("LEDGERLINK_EINVOICE_ROUTING"))
    return {name: EInvoiceIntegratorHook(integrator).get_conn() for name, integrator in routing.integrators.items()}
