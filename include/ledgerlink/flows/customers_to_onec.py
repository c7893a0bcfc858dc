"""Billing customers → 1C counterparties over OData (flow ``billing_customers_to_onec``)."""
from __future__ import annotations

import dataclasses
import functools
import logging

import pandas as pd
import sqlalchemy as sa

from ledgerlink import settings, tasks
from ledgerlink.billing.extract import read_customers
from ledgerlink.delivery import ItemDelivery
from ledgerlink.errors import TerminalError
from ledgerlink.flows import task_steps
from ledgerlink.flows.spec import declared
from ledgerlink.flows.state import Outcomes, RunState
from ledgerlink.flows.steps import blocked_on_gate_failure, gate_staged
from ledgerlink.flows.staging import read_frame, read_json, stage_frame, stage_json
from ledgerlink.ledger import CREATE, DELETE, FAILED, SUCCEEDED, SUPERSEDED, UPDATE, Ledger, PlannedChange
from ledgerlink.loads.http import ALREADY_GONE, UNCHANGED
from ledgerlink.onec import counterparties
from ledgerlink.onec.client import ODataClient
from ledgerlink.reconcile import assert_reconciled
from ledgerlink.report import RunSummary, write_workbook
from ledgerlink.retrying import RetryBudget
from ledgerlink.tracking import HASH_COLUMN, KEY_COLUMN, diff, next_watermark, with_keys_and_hashes

log = logging.getLogger(__name__)
SPEC = declared("billing_customers_to_onec", entity="customer", source="billing", target="onec",
                carries=counterparties.CARRIED)
FLOW = SPEC.id
WATERMARK = "updated_at"


def extract(run_id: str, billing: sa.Engine, ledger: Ledger) -> RunState:
    """Read every billing customer: the gate sees them all before change tracking picks what travels.

    A customer table is small (the exchange map's volume: 100,000), so reading it whole each hour costs less
    than what a watermark misses: an edit that did not move ``updated_at``, a duplicate key whose twin is
    unchanged, a customer held back before."""
    ledger.start_run(run_id, FLOW)  # takes the flow's lease: a second run at once stops here
    rows = read_customers(billing, None)
    state = RunState(run_id=run_id, read=len(rows), source_keys=int(rows["customer_id"].nunique()),
                     batch=[stage_frame(FLOW, run_id, "customers", rows)],
                     watermark_read=next_watermark(rows, WATERMARK, None))
    log.info("Billing customers: %d read", len(rows))
    return state


def gate(state: RunState, ledger: Ledger) -> RunState:
    """Validate every customer; blocking failures stop here with nothing loaded. What passed is then diffed
    against what 1C acknowledged: only changes (and deletions) travel."""
    run_id = state.run_id
    source_keys = set(read_frame(state.batch[0])["customer_id"].dropna())  # held-back ones included
    with blocked_on_gate_failure(ledger, SPEC, run_id):
        state = gate_staged(state, ledger, SPEC, max_rows=SPEC.volume_total)
    batch = with_keys_and_hashes(read_frame(state.batch[0]), list(SPEC.key), SPEC.content_columns)
    # Only a key gone from billing is a deletion, not one held back.
    changes = diff(batch, ledger.snapshot(FLOW), source_keys)
    to_send = changes.to_send
    to_send["_op"] = changes.operations(CREATE, UPDATE)
    log.info("Billing customers: %d new, %d changed, %d deleted, %d unchanged, %d held back",
             len(changes.new), len(changes.changed), len(changes.deleted), changes.unchanged, state.quarantined)
    return dataclasses.replace(state, **changes.counts(), batch=[stage_frame(FLOW, run_id, "changes", to_send)],
                               deletions=stage_json(FLOW, run_id, "deletions", changes.target_keys))


def load(state: RunState, client: ODataClient, ledger: Ledger, retry: RetryBudget | None = None) -> RunState:
    """Send each change to 1C through the delivery lifecycle (``ItemDelivery``): every item planned, sent and
    acknowledged in the ledger; a transient failure retried per customer (``retry``), the task failing only when
    1C stays down; refused credentials stopping the run at once, as one error."""
    run_id = state.run_id
    ledger.hold_lease(FLOW, run_id)
    rows = {row[KEY_COLUMN]: row for row in read_frame(state.batch[0]).to_dict("records")}
    deletions: dict[str, str | None] = read_json(state.deletions)
    changes = [PlannedChange(key, counterparties.ref_key(key), row[HASH_COLUMN], row["_op"]) for key, row in rows.items()]
    changes += [PlannedChange(key, target_key or counterparties.ref_key(key), None, DELETE)
                for key, target_key in deletions.items()]
    delivery = ItemDelivery(ledger, flow=FLOW, run_id=run_id, target="onec", entity="customer", retry=retry)
    for change in delivery.open(changes):
        if change.operation == DELETE:
            delivery.deliver(change, functools.partial(_mark_deleted, client, change.target_key))
        else:
            delivery.deliver(change, functools.partial(_upsert, client, rows[change.source_key],
                                                       change.operation == CREATE))
    if state.watermark_read:
        ledger.set_watermark(FLOW, WATERMARK, state.watermark_read)
    log.info("Loaded into 1C: %s", dict(delivery.outcomes))
    return dataclasses.replace(state, outcomes=Outcomes(**delivery.outcomes))


def _mark_deleted(client: ODataClient, ref_key: str) -> str:
    """A counterparty 1C no longer has is, for this change, already as billing wants it."""
    outcome = counterparties.mark_deleted(client, ref_key)
    return UNCHANGED if outcome == ALREADY_GONE else outcome


def _upsert(client: ODataClient, row: dict, believed_new: bool) -> str:
    outcome, _ = counterparties.upsert_counterparty(client, row, believed_new=believed_new)
    return outcome


def reconcile_and_report(state: RunState, billing: sa.Engine, client: ODataClient, ledger: Ledger) -> RunSummary:
    """Compare billing with 1C, write the workbook, log the summary; fail on any difference or refusal."""
    run_id = state.run_id
    ledger.hold_lease(FLOW, run_id)
    source = read_customers(billing, None)
    # A customer changed in billing after this run read it is the next run's work, not a difference.
    late_keys: set[str] = set()
    if state.watermark_read and not source.empty:
        changed_after = pd.to_datetime(source["updated_at"], utc=True, format="ISO8601") > \
            pd.Timestamp(state.watermark_read).tz_convert("UTC")
        late_keys = set(source.loc[changed_after.to_numpy(dtype=bool), "customer_id"])
    snapshot = ledger.snapshot(FLOW)
    held = ledger.quarantined(flow=FLOW, run_id=run_id)
    rejected = [i for i in ledger.items(flow=FLOW, run_id=run_id) if i["status"] == "rejected"
                and i["last_error"] != SUPERSEDED]
    held_keys = {q["source_key"] for q in held} | {i["source_key"] for i in rejected}
    target = counterparties.read_ours(client, {counterparties.ref_key(k) for k in set(snapshot) | set(source["customer_id"])})
    active = target[target["DeletionMark"] == False] if not target.empty else target  # noqa: E712 - pandas mask
    target_by_key = {row["Ref_Key"]: row for row in active.to_dict("records")}

    differences = []
    drifted: list[str] = []  # acknowledged customers 1C no longer holds as billing has them
    source_keys = set(source["customer_id"])
    missing = sorted(source_keys - set(snapshot) - held_keys - late_keys)
    if missing:
        differences.append(f"{len(missing)} billing customer(s) neither in 1C nor held back: {missing[:10]}")
    expected_refs = {counterparties.ref_key(k): k for k in snapshot if k in source_keys}
    if set(target_by_key) != set(expected_refs):
        extra = sorted(set(target_by_key) - set(expected_refs))
        absent = sorted(expected_refs[ref] for ref in set(expected_refs) - set(target_by_key))
        drifted += absent
        differences.append(f"counterparties: billing (acknowledged) {len(expected_refs)}, 1C {len(target_by_key)}"
                           f"; in 1C only: {extra[:5]}; missing or marked for deletion in 1C: customers {absent[:5]}")
    for row in source.to_dict("records"):
        key = row["customer_id"]
        if key in held_keys or key in late_keys or key not in snapshot:
            continue
        actual = target_by_key.get(counterparties.ref_key(key))
        if actual is not None:
            mismatched = counterparties.content_mismatches(counterparties.to_counterparty(row), actual)
            if mismatched:
                drifted.append(key)
                both = "; ".join(f"{field}: 1C {actual.get(field)!r}, billing {value!r}"
                                 for field, value in sorted(mismatched.items()))
                differences.append(f"customer {key}: 1C differs in {sorted(mismatched)} ({both})")
    if drifted and SPEC.conflict_policy == "master_wins":
        # The exchange map's policy (master wins; billing relays the master's data to 1C, and the spec refuses a
        # policy this flow cannot apply): forget what 1C acknowledged for these customers,
        # so the next run sends them again and puts billing's values back.
        ledger.forget(FLOW, drifted)
        differences.append(f"billing is the master: the next run re-sends {len(drifted)} customer(s) to 1C: "
                           f"{sorted(drifted)[:10]}")

    done = state.outcomes or Outcomes()
    summary = RunSummary(
        flow=FLOW, run_id=run_id, entity="customer", target="1C Catalog_Контрагенты",
        sent=done.created + done.updated, created=done.created, updated=done.updated,
        unchanged=state.unchanged, deleted=done.deleted, already_in_target=done.already_in_target,
        # The gate diffed only what passed: held-back customers are changes of their own here.
        changes=state.changes + state.quarantined,
        quarantined=state.quarantined, rejected=done.rejected, reconciliation=differences,
        reconciliation_detail=f"billing {len(source_keys)} customers, {len(held_keys)} held back; "
                              f"1C {len(target_by_key)} active counterparties",
        gate_report=state.gate_report,
        held_back=[{"key": q["source_key"], "status": "quarantined", "reasons": q["reasons"], "row": q["row"]}
                   for q in held] + [{"key": i["source_key"], "status": "rejected", "reasons": i["last_error"],
                                      "row": ""} for i in rejected],
    )
    workbook = settings.reports_dir(FLOW, run_id) / "reconciliation.xlsx"
    summary.workbook = str(write_workbook(summary, workbook, [], []))
    ledger.finish_run(run_id, FLOW, SUCCEEDED if not differences and not rejected else FAILED, summary.as_dict())
    log.info("\n%s", summary.text())
    assert_reconciled(FLOW, differences)
    if rejected:
        raise TerminalError(f"1C refused {len(rejected)} customer(s); see the workbook {summary.workbook}: "
                            + "; ".join(f"{i['source_key']}: {i['last_error']}" for i in rejected[:5]))
    return summary


def run_all(run_id: str, billing: sa.Engine, client: ODataClient, ledger: Ledger) -> RunSummary:
    """The whole flow in one call (the CLI and tests; the DAG runs the same steps as tasks)."""
    state = extract(run_id, billing, ledger)
    state = gate(state, ledger)
    state = load(state, client, ledger)
    return reconcile_and_report(state, billing, client, ledger)


def count_in_target(snapshot: dict) -> tuple[int, str]:
    """Active counterparties 1C holds of those Ledgerlink wrote."""
    known = {target_key for _, target_key in snapshot.values() if target_key}
    target = counterparties.read_ours(tasks.onec_client(), known)
    return (0 if target.empty else int((target["DeletionMark"] == False).sum())), "1C holds"  # noqa: E712


# The four Airflow tasks (ledgerlink.spine), each opening the connections it needs.
STEPS = task_steps(extract=extract, gate=gate, load=load, reconcile_and_report=reconcile_and_report,
                   source=tasks.billing_engine, target=tasks.onec_client,
                   count_in_target=count_in_target)
