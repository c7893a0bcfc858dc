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


def _ledger_dag(dag_id: str, *, schedule: str, doc_md: str, tags: list[str], closes_run: bool = True,
                catchup: bool = False):
    """The DAG decorator every Ledgerlink DAG shares: one run at a time, Ledgerlink's retries, and (``closes_run``)
    a failure callback on the tasks and the run that closes the run in the ledger with its status and reason (a
    run that failed, was blocked or was killed never stays 'running'). Companions that hold no run of their own
    (the e-invoice status poll and summary) pass ``closes_run=False``."""
    if not closes_run:
        return dag(dag_id=dag_id, schedule=schedule, start_date=START_DATE, catchup=catchup, max_active_runs=1,
                   default_args=DEFAULT_ARGS, tags=tags, doc_md=doc_md)
    on_failure = close_run_on_failure(dag_id)
    return dag(dag_id=dag_id, schedule=schedule, start_date=START_DATE, catchup=catchup, max_active_runs=1,
               default_args={**DEFAULT_ARGS, "on_failure_callback": on_failure}, on_failure_callback=on_failure,
               tags=tags, doc_md=doc_md)


def exchange_dag(flow_id: str, *, produces: Asset, doc_md: str = ""):
    """Build the DAG of one exchange from its exchange-map entry. ``produces`` is the Asset its load task
    updates; ``doc_md`` is the DAG file's own prose, shown after what the map says."""
    if flow_id not in FLOW_MODULES:
        raise KeyError(f"flow {flow_id!r} has no module in ledgerlink.flows.FLOW_MODULES")
    spec = spec_of(flow_id)

    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags)
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


# e-invoices (issue 22): one DAG that dispatches, one that polls statuses, one that sums up the day ----------------
def einvoice_dispatch_dag(*, produces: Asset, doc_md: str = ""):
    """``billing_einvoices``: extract → gate → number → send via each integrator (in its pool) → the failovers →
    reconcile and report. The map gives schedule and tags; the routing file gives the integrators and pools."""
    from ledgerlink.einvoice.routing import load_routing

    spec, routing = spec_of("billing_einvoices"), load_routing()

    def flow():
        from ledgerlink.flows.einvoices import FLOW

        return FLOW

    def state(data: dict):
        from ledgerlink.flows.state import RunState

        return RunState.from_xcom(data)

    @_ledger_dag(spec.id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags)
    def dispatch():
        @task
        @fail_fast_on_terminal
        def extract() -> dict:
            from ledgerlink import tasks

            return flow().extract(current_run_id(), tasks.billing_engine(), tasks.ledger()).to_xcom()

        @task
        @fail_fast_on_terminal
        def gate(data: dict) -> dict:
            from ledgerlink import tasks

            return flow().gate(state(data), tasks.ledger()).to_xcom()

        @task(pool=routing.integrators[routing.user_list].pool)
        @fail_fast_on_terminal
        def number(data: dict) -> dict:
            from ledgerlink import tasks

            clients = tasks.einvoice_clients()
            return flow().number(state(data), tasks.billing_engine(), clients[routing.user_list],
                                 tasks.ledger()).to_xcom()

        def sender(integrator: str, wave: str):
            @task(task_id=f"{wave}_{integrator}", pool=routing.integrators[integrator].pool)
            @fail_fast_on_terminal
            def send(data: dict) -> dict:
                from ledgerlink import tasks

                return flow().send(state(data), integrator, tasks.einvoice_clients(), tasks.ledger())

            return send

        @task(outlets=[produces])
        @fail_fast_on_terminal
        def reconcile_and_report(data: dict) -> dict:
            from ledgerlink import tasks

            return flow().reconcile_and_report(state(data), tasks.einvoice_clients(), tasks.ledger()).as_dict()

        numbered = number(gate(extract()))
        names = sorted(routing.integrators)
        primaries = [sender(name, "send")(numbered) for name in names]
        failovers = [sender(name, "failover")(numbered) for name in names]
        report = reconcile_and_report(numbered)
        for wave in failovers:
            primaries >> wave
            wave >> report

    return dispatch()


def einvoice_status_dag(dag_id: str, *, schedule: str, doc_md: str):
    """Every queued e-invoice asked, per integrator in its pool, until GİB's answer is final."""
    from ledgerlink.einvoice.routing import load_routing

    routing = load_routing()

    @_ledger_dag(dag_id, schedule=schedule, doc_md=doc_md, tags=["ledgerlink", "billing_einvoices", "invoice"],
                 closes_run=False)
    def statuses():
        for name in sorted(routing.integrators):
            @task(task_id=f"poll_{name}", pool=routing.integrators[name].pool)
            @fail_fast_on_terminal
            def poll(integrator: str = name) -> dict:
                from ledgerlink import tasks
                from ledgerlink.flows.einvoices import FLOW

                return FLOW.poll_statuses(tasks.einvoice_clients(), tasks.ledger(), integrator)

            poll()

    return statuses()


def einvoice_summary_dag(dag_id: str, *, schedule: str, doc_md: str):
    """Finance's daily e-invoice summary (log and workbook)."""

    @_ledger_dag(dag_id, schedule=schedule, doc_md=doc_md, tags=["ledgerlink", "billing_einvoices", "invoice"],
                 closes_run=False)
    def summary():
        @task
        @fail_fast_on_terminal
        def daily_summary() -> str:
            from ledgerlink import tasks
            from ledgerlink.flows.einvoices import daily_summary as summarise

            return summarise(tasks.ledger())

        daily_summary()

    return summary()


def file_intake_dag(flow_id: str, *, landed: Asset, produces: Asset, file_pattern: str, doc_md: str = ""):
    """The DAG of a file intake (issue 21): the SFTP provider's sensor waits, deferred, for a file matching
    ``file_pattern`` in the connection's ``remote_root``; then one task takes every settled file. The map's
    schedule is ``@continuous``: each run ends once the files that landed are taken, and the next one waits.

    The provider's sensor module imports paramiko when the file is parsed (≈ 0.25 s): the price of a sensor that
    waits in the triggerer instead of a worker slot."""
    from airflow.providers.sftp.sensors.sftp import SFTPSensor

    spec = spec_of(flow_id)
    conn_id = _system_connection(spec.source)

    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags)
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

    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags, catchup=month_end)
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


def message_exchange_dag(flow_id: str, *, produces: Asset, doc_md: str = ""):
    """The DAG of a message exchange (issue 20's month-end file exchange with 1C): send the period's message
    (1C's earlier answers read first) → wait for 1C's answer → reconcile and report. The period is the month
    before the run's logical date; catch-up runs the months missed, in order, one at a time, and each message
    carries what the earlier ones left unconfirmed."""
    spec = spec_of(flow_id)
    conn_id = _system_connection(spec.target)

    def module():
        return importlib.import_module(FLOW_MODULES[flow_id])

    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags, catchup=True)
    def exchange():
        @task
        @fail_fast_on_terminal
        def send_message(logical_date=None) -> dict:
            return module().send_task(current_run_id(), logical_date, conn_id)

        @task(outlets=[produces])
        @fail_fast_on_terminal
        def await_acknowledgement(state: dict) -> dict:
            return module().await_task(state, conn_id)

        @task
        @fail_fast_on_terminal
        def reconcile_and_report(state: dict) -> dict:
            return module().report_task(state)

        reconcile_and_report(await_acknowledgement(send_message()))

    return exchange()
