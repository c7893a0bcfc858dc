"""Each exchange as a few plain steps (extract, gate, load, reconcile and report) that a DAG wires together.

Steps hand each other a typed state (``state.RunState``, plain JSON over XCom) and keep the data itself in staged
Arrow IPC files. Each flow module declares its spec against the exchange map (``spec.declared``) and its
``STEPS``: a flow of records to a per-record target is a ``keyed.KeyedFlow`` (spec, reader, target adapter); the
registry below tells the spine which module runs which flow (a dict, not a naming convention, and light to
import).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FLOW_MODULES = {
    "billing_customers_to_onec": "ledgerlink.flows.customers_to_onec",
    "billing_invoice_lines_to_erp": "ledgerlink.flows.invoice_lines_to_erp",
    "billing_invoices_to_onec": "ledgerlink.flows.invoices_to_onec",
    # A change feed (flows.feed.ChangeFeedFlow): 1C's bank receipts, matched to invoices, into billing's payments.
    "onec_payments_to_billing": "ledgerlink.flows.payments_from_onec",
    # Its own DAG builder (ledgerlink.spine.einvoice_dispatch_dag); the CLI asks it for its live check_target.
    "billing_einvoices": "ledgerlink.flows.einvoices",
    # Not spine flows (no STEPS): a file intake and two ratings, each with its own DAG builder in ledgerlink.spine
    # and a ``run_task``.
    "bridge_usage_to_billing": "ledgerlink.flows.bridge_usage",
    "usage_rating_nightly": "ledgerlink.flows.usage_rating",
    "usage_rating_month_end": "ledgerlink.flows.usage_rating",
    # A message exchange (ledgerlink.spine.message_exchange_dag): send_task, await_task, report_task.
    "billing_invoices_to_onec_files": "ledgerlink.flows.invoices_to_onec_files",
}


@dataclass(frozen=True)
class FlowSteps:
    """The four Airflow tasks of a flow, each opening the connections it needs."""

    extract: Callable[..., dict]  # (run_id, params=None): params are the run's trigger params (flows.params)
    gate: Callable[[dict], dict]
    load: Callable[[dict], dict]
    reconcile_and_report: Callable[[dict], dict]
    # For ``ledgerlink summary --check-targets``: given the flow's snapshot, how many of its records the target
    # holds now, and a phrase naming the target ("1C holds").
    count_in_target: Callable[[dict], tuple[int, str]] | None = None


def task_steps(*, extract: Callable, gate: Callable, load: Callable, reconcile_and_report: Callable,
               source: Callable[[], object], target: Callable[[], object],
               count_in_target: Callable[[dict], tuple[int, str]] | None = None) -> FlowSteps:
    """A flow's four Airflow tasks from its plain steps, which take their connections in the usual order:
    ``extract(run_id, source, ledger, params=RunParams)``, ``gate(state, ledger)``, ``load(state, target, ledger)`` and
    ``reconcile_and_report(state, source, target, ledger)``. ``source`` and ``target`` open the connections
    (called inside the task, never at import); the run's state crosses XCom as plain JSON."""

    def ledger():
        from ledgerlink import tasks

        return tasks.ledger()

    def state(data: dict):
        from ledgerlink.flows.state import RunState

        return RunState.from_xcom(data)

    def _params(params):
        from ledgerlink.flows.params import RunParams

        return RunParams.of(params)

    return FlowSteps(
        extract=lambda run_id, params=None: extract(run_id, source(), ledger(), params=_params(params)).to_xcom(),
        gate=lambda data: gate(state(data), ledger()).to_xcom(),
        load=lambda data: load(state(data), target(), ledger()).to_xcom(),
        reconcile_and_report=lambda data: reconcile_and_report(state(data), source(), target(), ledger()).as_dict(),
        count_in_target=count_in_target)
