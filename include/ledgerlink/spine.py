"""The spine every exchange DAG shares: extract → gate → load → reconcile_and_report, as four tasks.

A DAG file names its flow id; the exchange map gives its schedule, tags and documentation (``flows.spec``), and
``ledgerlink.flows.FLOW_MODULES`` names the module whose ``STEPS`` run its tasks. The module is imported only
when a task runs, never at parse time.
"""
from __future__ import annotations

import importlib
from datetime import datetime, timezone

from airflow.sdk import Asset, dag, task

from ledgerlink.flows import FLOW_MODULES
from ledgerlink.flows.spec import spec_of
from ledgerlink.tasks import DEFAULT_ARGS, close_run_on_failure, current_run_id, fail_fast_on_terminal

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _steps(flow_id: str):
    """The flow's steps (``FlowSteps``), from the module the registry names for it."""
    return importlib.import_module(FLOW_MODULES[flow_id]).STEPS


def exchange_dag(flow_id: str, *, produces: Asset, doc_md: str = ""):
    """Build the DAG of one exchange from its exchange-map entry. ``produces`` is the Asset its load task
    updates; ``doc_md`` is the DAG file's own prose, shown after what the map says."""
    if flow_id not in FLOW_MODULES:
        raise KeyError(f"flow {flow_id!r} has no module in ledgerlink.flows.FLOW_MODULES")
    spec = spec_of(flow_id)
    # A task that fails for good, or a run that fails (a task killed, a timeout), closes the run in the ledger.
    on_failure = close_run_on_failure(flow_id)

    @dag(dag_id=flow_id, schedule=spec.schedule, start_date=START_DATE, catchup=False, max_active_runs=1,
         default_args={**DEFAULT_ARGS, "on_failure_callback": on_failure}, on_failure_callback=on_failure,
         tags=spec.tags, doc_md=spec.doc_md(doc_md))
    def exchange():
        @task
        @fail_fast_on_terminal
        def extract() -> dict:
            return _steps(flow_id).extract(current_run_id())

        @task
        @fail_fast_on_terminal
        def gate(meta: dict) -> dict:
            return _steps(flow_id).gate(meta)

        @task(outlets=[produces])
        @fail_fast_on_terminal
        def load(meta: dict) -> dict:
            return _steps(flow_id).load(meta)

        @task
        @fail_fast_on_terminal
        def reconcile_and_report(meta: dict) -> dict:
            return _steps(flow_id).reconcile_and_report(meta)

        reconcile_and_report(load(gate(extract())))

    return exchange()


def file_intake_dag(flow_id: str, *, landed: Asset, produces: Asset, file_pattern: str, doc_md: str = ""):
    """The DAG of a file intake (issue 21): the SFTP provider's sensor waits, deferred, for a file matching
    ``file_pattern`` in the connection's ``remote_root``; then one task takes every settled file. The map's
    schedule is ``@continuous``: each run ends once the files that landed are taken, and the next one waits.

    The provider's sensor module imports paramiko when the file is parsed (≈ 0.25 s): the price of a sensor that
    waits in the triggerer instead of a worker slot."""
    from airflow.providers.sftp.sensors.sftp import SFTPSensor

    spec = spec_of(flow_id)
    on_failure = close_run_on_failure(flow_id)
    conn_id = _system_connection(spec.source)

    @dag(dag_id=flow_id, schedule=spec.schedule, start_date=START_DATE, catchup=False, max_active_runs=1,
         default_args={**DEFAULT_ARGS, "on_failure_callback": on_failure}, on_failure_callback=on_failure,
         tags=spec.tags, doc_md=spec.doc_md(doc_md))
    def intake():
        # A quiet day is not a failure: after six hours without a file the run ends skipped and the next one waits.
        wait = SFTPSensor(task_id="wait_for_files", sftp_conn_id=conn_id, deferrable=True, poke_interval=60,
                          timeout=6 * 3600, soft_fail=True,
                          path=f"{{{{ conn.{conn_id}.extra_dejson.remote_root or '/' }}}}", file_pattern=file_pattern)

        @task(outlets=[landed, produces])
        @fail_fast_on_terminal
        def take_files() -> dict:
            return importlib.import_module(FLOW_MODULES[flow_id]).run_task(current_run_id(), conn_id)

        wait >> take_files()

    return intake()


def rating_dag(flow_id: str, *, consumes: Asset, produces: Asset, month_end: bool, doc_md: str = ""):
    """The DAG of a rating in billing: nightly (the periods that received usage) or at month-end (the period the
    run's data interval closes, rated and issued; with catch-up, so a month missed is closed later)."""
    spec = spec_of(flow_id)
    on_failure = close_run_on_failure(flow_id)

    @dag(dag_id=flow_id, schedule=spec.schedule, start_date=START_DATE, catchup=month_end, max_active_runs=1,
         default_args={**DEFAULT_ARGS, "on_failure_callback": on_failure}, on_failure_callback=on_failure,
         tags=spec.tags, doc_md=spec.doc_md(doc_md))
    def rating():
        @task(inlets=[consumes], outlets=[produces])
        @fail_fast_on_terminal
        def rate(logical_date=None) -> dict:
            return importlib.import_module(FLOW_MODULES[flow_id]).run_task(
                current_run_id(), closing_month_of=logical_date if month_end else None)

        rate()

    return rating()


def _system_connection(system: str) -> str:
    from ledgerlink.exchange_map import default_map

    return default_map().systems[system]["connection"]
