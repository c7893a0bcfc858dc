"""The spine every exchange DAG shares: extract → gate → load → reconcile_and_report, as four tasks.

A DAG file names its flow id; the exchange map gives its schedule, tags and documentation (``flows.spec``), and
``ledgerlink.flows.FLOW_MODULES`` names the module whose ``STEPS`` run its tasks. The module is imported only
when a task runs, never at parse time.
"""
from __future__ import annotations

import functools
import importlib
from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, dag, task

from ledgerlink.flows import FLOW_MODULES
from ledgerlink.flows.spec import spec_of
from ledgerlink.flows.run_end import notify_failure
from ledgerlink.tasks import DEFAULT_ARGS, RUN_TIMEOUT, close_run_on_failure, current_run_id, fail_fast_on_terminal

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _steps(flow_id: str):
    """The flow's steps (``FlowSteps``), from the module the registry names for it."""
    return importlib.import_module(FLOW_MODULES[flow_id]).STEPS


def _ledger_dag(dag_id: str, *, schedule: str, doc_md: str, tags: list[str], closes_run: bool = True,
                catchup: bool = False, display_name: str | None = None, params: dict | None = None,
                dagrun_timeout: timedelta = RUN_TIMEOUT):
    """The DAG decorator every Ledgerlink DAG shares: one run at a time, Ledgerlink's retries and timeouts, a
    display name, a mail to finance when a run fails, and a last task, ``summary``, that runs even when an
    upstream task failed (trigger rule all_done) and logs the run's summary block, then fails when any task
    failed, so the run's state stays honest. With ``closes_run``, a failure callback on the tasks and the run
    closes the run in the ledger with its status and reason (a run that failed, was blocked or was killed never
    stays 'running'). Companions that hold no run of their own (the e-invoice status poll and summary) pass
    ``closes_run=False``. ``params``: the trigger form's parameters (``flows.params.airflow_params``)."""
    notify = notify_failure(dag_id, closes_run=closes_run)
    default_args = dict(DEFAULT_ARGS)
    on_failure = [notify]
    if closes_run:
        close = close_run_on_failure(dag_id)
        default_args["on_failure_callback"] = close
        on_failure = [close, notify]
    decorate = dag(dag_id=dag_id, schedule=schedule, start_date=START_DATE, catchup=catchup, max_active_runs=1,
                   default_args=default_args, on_failure_callback=on_failure, tags=tags, doc_md=doc_md,
                   dag_display_name=display_name or dag_id, dagrun_timeout=dagrun_timeout, params=params or {})

    def with_summary(body):
        @functools.wraps(body)
        def build():
            built = body()
            final = _summary_task(dag_id, closes_run)()
            for leaf in [t for t in final.operator.dag.leaves if t is not final.operator]:
                leaf >> final.operator
            return built

        return decorate(build)

    return with_summary


def _summary_task(dag_id: str, closes_run: bool):
    @task(task_id="summary", task_display_name="Summary for finance", trigger_rule="all_done",
          execution_timeout=timedelta(minutes=10))
    @fail_fast_on_terminal
    def summary() -> None:
        from ledgerlink.flows.run_end import summarise_current_run

        summarise_current_run(dag_id, closes_run=closes_run)

    return summary


def _record_counts(asset: Asset, counts: dict) -> None:
    """The run's counts in the Asset event's extra, so a downstream DAG (and the Assets page) sees what changed."""
    from airflow.sdk import get_current_context

    from ledgerlink.tasks import current_run_id

    extra = {"run_id": current_run_id(), **{k: v for k, v in counts.items() if isinstance(v, (int, str, bool))}}
    get_current_context()["outlet_events"][asset].extra = extra


def _counts(summary: dict) -> dict:
    """What a reconcile task hands XCom: the run's counts. The whole summary is in the ledger and in the log;
    Airflow would print a returned dict of it as one long Python line into the task log."""
    return {k: summary[k] for k in ("run_id", "status", "sent", "created", "updated", "deleted", "quarantined",
                                    "rejected") if k in summary}


def _current_params() -> dict:
    from airflow.sdk import get_current_context

    return dict(get_current_context().get("params") or {})


def exchange_dag(flow_id: str, *, produces: Asset, doc_md: str = ""):
    """Build the DAG of one exchange from its exchange-map entry. ``produces`` is the Asset its load task
    updates; ``doc_md`` is the DAG file's own prose, shown after what the map says."""
    if flow_id not in FLOW_MODULES:
        raise KeyError(f"flow {flow_id!r} has no module in ledgerlink.flows.FLOW_MODULES")
    spec = spec_of(flow_id)

    from ledgerlink.flows.spec import system_name
    from ledgerlink.flows.params import airflow_params

    source, target = system_name(spec.source), system_name(spec.target)

    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags,
                 display_name=spec.title, params=airflow_params())
    def exchange():
        @task(task_display_name=f"Extract from {source}")
        @fail_fast_on_terminal
        def extract() -> dict:
            return _steps(flow_id).extract(current_run_id(), _current_params())

        @task(task_display_name="Gate (Great Expectations)")
        @fail_fast_on_terminal
        def gate(meta: dict) -> dict:
            return _steps(flow_id).gate(meta)

        @task(outlets=[produces], task_display_name=f"Load into {target}")
        @fail_fast_on_terminal
        def load(meta: dict) -> dict:
            state = _steps(flow_id).load(meta)
            _record_counts(produces, {"held_back": state.get("quarantined", 0), **(state.get("outcomes") or {}),
                                      "dry_run": bool((state.get("params") or {}).get("dry_run"))})
            return state

        @task(task_display_name="Reconcile and report")
        @fail_fast_on_terminal
        def reconcile_and_report(meta: dict) -> dict:
            return _counts(_steps(flow_id).reconcile_and_report(meta))

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

    from ledgerlink.flows.params import airflow_params

    @_ledger_dag(spec.id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags, display_name=spec.title,
                 params=airflow_params())
    def dispatch():
        @task
        @fail_fast_on_terminal
        def extract() -> dict:
            from ledgerlink import tasks
            from ledgerlink.flows.params import RunParams

            return flow().extract(current_run_id(), tasks.billing_engine(), tasks.ledger(),
                                  RunParams.of(_current_params())).to_xcom()

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

        @task(outlets=[produces], task_display_name="Reconcile and report")
        @fail_fast_on_terminal
        def reconcile_and_report(data: dict) -> dict:
            from ledgerlink import tasks

            summary = flow().reconcile_and_report(state(data), tasks.einvoice_clients(), tasks.ledger()).as_dict()
            _record_counts(produces, {k: summary.get(k, 0) for k in ("sent", "rejected", "quarantined")})
            return _counts(summary)

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
                 closes_run=False, display_name="e-invoices: GİB statuses")
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
                 closes_run=False, display_name="e-invoices: daily summary")
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

    # The run waits up to six hours for a file, then takes it: its budget is longer than a flow's usual one.
    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags, display_name=spec.title,
                 dagrun_timeout=timedelta(hours=8))
    def intake():
        # A quiet day is not a failure: after six hours without a file the run ends skipped and the next one waits.
        wait = SFTPSensor(task_id="wait_for_files", task_display_name="Wait for CDR files", sftp_conn_id=conn_id,
                          deferrable=True, poke_interval=60, timeout=6 * 3600, soft_fail=True,
                          execution_timeout=timedelta(hours=6, minutes=10),
                          path=f"{{{{ conn.{conn_id}.extra_dejson.remote_root or '/' }}}}", file_pattern=file_pattern)

        @task(outlets=[landed, produces], task_display_name="Take the files into billing")
        @fail_fast_on_terminal
        def take_files() -> dict:
            counts = importlib.import_module(FLOW_MODULES[flow_id]).run_task(current_run_id(), conn_id)
            _record_counts(landed, counts)
            _record_counts(produces, counts)
            return counts

        wait >> take_files()

    return intake()


def rating_dag(flow_id: str, *, consumes: Asset, produces: Asset, month_end: bool, doc_md: str = ""):
    """The DAG of a rating in billing: nightly (the periods that received usage) or at month-end (the period the
    run's data interval closes, rated and issued; with catch-up, so a month missed is closed later)."""
    spec = spec_of(flow_id)

    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags, catchup=month_end,
                 display_name=spec.title)
    def rating():
        @task(inlets=[consumes], outlets=[produces], task_display_name="Rate usage into invoices")
        @fail_fast_on_terminal
        def rate(logical_date=None) -> dict:
            counts = importlib.import_module(FLOW_MODULES[flow_id]).run_task(
                current_run_id(), closing_month_of=logical_date if month_end else None)
            _record_counts(produces, {"periods": ",".join(counts.get("periods", [])), "issued": counts.get("issued", 0),
                                      **{k.replace(" ", "_"): v for k, v in (counts.get("documents") or {}).items()}})
            return counts

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
    from ledgerlink.flows.spec import system_name

    spec = spec_of(flow_id)
    conn_id = _system_connection(spec.target)

    def module():
        return importlib.import_module(FLOW_MODULES[flow_id])

    @_ledger_dag(flow_id, schedule=spec.schedule, doc_md=spec.doc_md(doc_md), tags=spec.tags, catchup=True,
                 display_name=spec.title)
    def exchange():
        @task(task_display_name=f"Send the month's message to {system_name(spec.target)}")
        @fail_fast_on_terminal
        def send_message(logical_date=None) -> dict:
            return module().send_task(current_run_id(), logical_date, conn_id)

        @task(outlets=[produces], task_display_name="Await 1C's answer")
        @fail_fast_on_terminal
        def await_acknowledgement(state: dict) -> dict:
            return module().await_task(state, conn_id)

        @task(task_display_name="Reconcile and report")
        @fail_fast_on_terminal
        def reconcile_and_report(state: dict) -> dict:
            return module().report_task(state)

        reconcile_and_report(await_acknowledgement(send_message()))

    return exchange()
