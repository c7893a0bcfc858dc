"""The spine every exchange DAG shares: extract → gate → load → reconcile_and_report, as four tasks.

A flow module (``ledgerlink.flows.<name>``) provides ``task_extract(run_id)``, ``task_gate(meta)``,
``task_load(meta)`` and ``task_reconcile_and_report(meta)``, each opening its own connections. The DAG file
names the flow module by its dotted path: it is imported only when a task runs, never at parse time.
"""
from __future__ import annotations

import importlib
from datetime import datetime, timezone

from airflow.sdk import Asset, dag, task

from ledgerlink.tasks import DEFAULT_ARGS, close_run_on_failure, current_run_id, fail_fast_on_terminal

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _flow(module: str):
    return importlib.import_module(module)


def exchange_dag(*, dag_id: str, schedule: str, tags: list[str], doc_md: str, flow_module: str, produces: Asset):
    """Build the DAG of one exchange. ``produces`` is the Asset its load task updates."""

    # A task that fails for good, or a run that fails (a task killed, a timeout), closes the run in the ledger.
    on_failure = close_run_on_failure(dag_id)

    @dag(dag_id=dag_id, schedule=schedule, start_date=START_DATE, catchup=False, max_active_runs=1,
         default_args={**DEFAULT_ARGS, "on_failure_callback": on_failure}, on_failure_callback=on_failure,
         tags=["ledgerlink", *tags], doc_md=doc_md)
    def exchange():
        @task
        @fail_fast_on_terminal
        def extract() -> dict:
            return _flow(flow_module).task_extract(current_run_id())

        @task
        @fail_fast_on_terminal
        def gate(meta: dict) -> dict:
            return _flow(flow_module).task_gate(meta)

        @task(outlets=[produces])
        @fail_fast_on_terminal
        def load(meta: dict) -> dict:
            return _flow(flow_module).task_load(meta)

        @task
        @fail_fast_on_terminal
        def reconcile_and_report(meta: dict) -> dict:
            return _flow(flow_module).task_reconcile_and_report(meta)

        reconcile_and_report(load(gate(extract())))

    return exchange()
