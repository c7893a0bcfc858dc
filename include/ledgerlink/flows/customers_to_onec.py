"""Billing customers → 1C counterparties over OData (flow ``billing_customers_to_onec``)."""
from __future__ import annotations

import functools
import logging

import pandas as pd
import sqlalchemy as sa

from ledgerlink import settings
from ledgerlink.billing.extract import read_customers
from ledgerlink.errors import AuthenticationFailed, GateFailed, RemoteRejected, TerminalError, TransientError
from ledgerlink.flows import FlowSteps
from ledgerlink.flows.spec import declared
from ledgerlink.flows.staging import read_frame, read_json, stage_frame, stage_json
from ledgerlink.gates import run_gate, suite_for
from ledgerlink.ledger import BLOCKED, CREATE, DELETE, FAILED, SUCCEEDED, SUPERSEDED, UPDATE, Ledger, PlannedChange
from ledgerlink.loads.http import UNCHANGED
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


def extract(run_id: str, billing: sa.Engine, ledger: Ledger) -> dict:
    """Read every billing customer: the gate sees them all before change tracking picks what travels.

    A customer table is small (the exchange map's volume: 100,000), so reading it whole each hour costs less
    than what a watermark misses: an edit that did not move ``updated_at``, a duplicate key whose twin is
    unchanged, a customer held back before."""
    ledger.start_run(run_id, FLOW)  # takes the flow's lease: a second run at once stops here
    rows = read_customers(billing, None)
    meta = {"run_id": run_id, "read": len(rows), "source_keys": int(rows["customer_id"].nunique()),
            "batch": stage_frame(FLOW, run_id, "customers", rows),
            "watermark_read": next_watermark(rows, WATERMARK, None)}
    log.info("Billing customers: %d read", len(rows))
    return meta


def gate(meta: dict, ledger: Ledger) -> dict:
    """Validate every customer; blocking failures stop here with nothing loaded. What passed is then diffed
    against what 1C acknowledged: only changes (and deletions) travel."""
    run_id = meta["run_id"]
    ledger.hold_lease(FLOW, run_id)
    rows = read_frame(meta["batch"])
    volume = SPEC.volume_total
    ledger.clear_quarantine(run_id, FLOW)
    try:
        result = run_gate(rows, suite_for(SPEC.gate, max_rows=volume), run_id=run_id, flow=FLOW,
                          report_dir=settings.reports_dir(FLOW, run_id), ledger=ledger)
    except GateFailed as e:
        ledger.end_run_early(run_id, FLOW, BLOCKED, str(e))
        raise
    batch = with_keys_and_hashes(result.passed, list(SPEC.key), SPEC.content_columns)
    # Every key billing holds, held-back ones included: only a key gone from billing is a deletion.
    changes = diff(batch, ledger.snapshot(FLOW), set(rows["customer_id"].dropna()))
    to_send = changes.to_send
    to_send["_op"] = changes.operations(CREATE, UPDATE)
    log.info("Billing customers: %d new, %d changed, %d deleted, %d unchanged, %d held back",
             len(changes.new), len(changes.changed), len(changes.deleted), changes.unchanged, len(result.quarantined))
    return {**meta, **changes.counts(), "batch": stage_frame(FLOW, run_id, "changes", to_send),
            "deletions": stage_json(FLOW, run_id, "deletions", changes.target_keys),
            "quarantined": len(result.quarantined), "gate_report": str(result.report_html)}


OUTCOME = {CREATE: "created", UPDATE: "updated", DELETE: "deleted"}


def _attempt(ledger: Ledger, item_id: int, send):
    """One attempt to send an item: the ledger counts it (and shows it in flight) before the request leaves."""
    ledger.mark_sent([item_id])
    try:
        return send()
    except TransientError as e:
        ledger.record_failure(item_id, str(e), terminal=False)
        raise


def load(meta: dict, client: ODataClient, ledger: Ledger, retry: RetryBudget | None = None) -> dict:
    """Send each change to 1C; every item is planned, sent and acknowledged in the ledger.

    A transient failure is retried for that customer with backoff (``retry``); only when 1C stays down is it
    raised for Airflow to retry the task: what 1C confirmed stays confirmed, the rest stays open and is
    continued (not doubled) by the retry. Refused credentials stop the run at once, as one error.
    """
    run_id = meta["run_id"]
    ledger.hold_lease(FLOW, run_id)
    retry = retry or RetryBudget()
    batch = read_frame(meta["batch"])
    deletions: dict[str, str | None] = read_json(meta["deletions"])
    planned = [PlannedChange(row[KEY_COLUMN], counterparties.ref_key(row[KEY_COLUMN]), row[HASH_COLUMN], row["_op"])
               for row in batch.to_dict("records")]
    planned += [PlannedChange(key, target_key or counterparties.ref_key(key), None, DELETE)
                for key, target_key in deletions.items()]
    ledger.close_superseded(FLOW, {c.source_key for c in planned})
    # Every change ends as exactly one of these (held back ones were counted by the gate).
    outcomes = {"created": 0, "updated": 0, "deleted": 0, "already_in_target": 0, "rejected": 0}
    # A retry does not send again what an earlier attempt of this run got acknowledged: it counts it.
    acknowledged = ledger.snapshot_hashes(FLOW, [c.source_key for c in planned])
    done = [c for c in planned if (c.source_key not in acknowledged if c.operation == DELETE
                                   else acknowledged.get(c.source_key) == c.content_hash)]
    for change in done:
        outcomes[OUTCOME[change.operation]] += 1
    done_keys = {c.source_key for c in done}
    planned = [c for c in planned if c.source_key not in done_keys]
    item_ids = ledger.plan(run_id, FLOW, "onec", "customer", planned)
    # Sent by an earlier attempt whose answer never came: 1C may have applied them already.
    sent_earlier = ledger.sent_before(item_ids.values())
    rows = {row[KEY_COLUMN]: row for row in batch.to_dict("records")}
    for change in planned:
        item_id = item_ids[change.source_key]
        what = f"customer {change.source_key} ({OUTCOME[change.operation][:-1]} in 1C)"
        if change.operation == DELETE:
            send = functools.partial(counterparties.mark_deleted, client, change.target_key)
        else:
            send = functools.partial(counterparties.upsert_counterparty, client, rows[change.source_key],
                                     believed_new=change.operation == CREATE)
        try:
            result = retry.call(what, functools.partial(_attempt, ledger, item_id, send))
            if change.operation == DELETE:
                outcome = "deleted"
            else:
                outcome = result[0]
                if outcome == UNCHANGED:
                    # 1C holds the content already: from an earlier attempt of ours whose answer was lost (then
                    # it is what that attempt did), or from elsewhere (then nothing was done).
                    lost_answer = item_id in sent_earlier or retry.attempts_of_last_call > 1
                    outcome = OUTCOME[change.operation] if lost_answer else "already_in_target"
        except RemoteRejected as e:
            ledger.record_failure(item_id, str(e), terminal=True)
            outcomes["rejected"] += 1
            log.warning("1C refused customer %s: %s", change.source_key, e)
            continue
        except (TransientError, AuthenticationFailed) as e:  # 1C stays down, or refuses who we are
            ledger.record_failure(item_id, str(e), terminal=False)
            raise
        ledger.acknowledge(FLOW, [(item_id, change.source_key, change.content_hash, change.target_key, change.operation)])
        outcomes[outcome] += 1
    if meta.get("watermark_read"):
        ledger.set_watermark(FLOW, WATERMARK, meta["watermark_read"])
    log.info("Loaded into 1C: %s", outcomes)
    return {**meta, **outcomes}


def reconcile_and_report(meta: dict, billing: sa.Engine, client: ODataClient, ledger: Ledger) -> RunSummary:
    """Compare billing with 1C, write the workbook, log the summary; fail on any difference or refusal."""
    run_id = meta["run_id"]
    ledger.hold_lease(FLOW, run_id)
    source = read_customers(billing, None)
    # A customer changed in billing after this run read it is the next run's work, not a difference.
    late_keys: set[str] = set()
    if meta.get("watermark_read") and not source.empty:
        changed_after = pd.to_datetime(source["updated_at"], utc=True, format="ISO8601") > \
            pd.Timestamp(meta["watermark_read"]).tz_convert("UTC")
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

    summary = RunSummary(
        flow=FLOW, run_id=run_id, entity="customer", target="1C Catalog_Контрагенты",
        sent=meta["created"] + meta["updated"], created=meta["created"], updated=meta["updated"],
        unchanged=meta["unchanged"], deleted=meta["deleted"], already_in_target=meta["already_in_target"],
        changes=meta["new"] + meta["changed"] + meta["deleted"] + meta["quarantined"],
        quarantined=meta["quarantined"], rejected=meta["rejected"], reconciliation=differences,
        reconciliation_detail=f"billing {len(source_keys)} customers, {len(held_keys)} held back; "
                              f"1C {len(target_by_key)} active counterparties",
        gate_report=meta.get("gate_report", ""),
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
    meta = extract(run_id, billing, ledger)
    meta = gate(meta, ledger)
    meta = load(meta, client, ledger)
    return reconcile_and_report(meta, billing, client, ledger)


# The four Airflow tasks (ledgerlink.spine), each opening the connections it needs.
def task_extract(run_id: str) -> dict:
    from ledgerlink import tasks

    return extract(run_id, tasks.billing_engine(), tasks.ledger())


def task_gate(meta: dict) -> dict:
    from ledgerlink import tasks

    return gate(meta, tasks.ledger())


def task_load(meta: dict) -> dict:
    from ledgerlink import tasks

    return load(meta, tasks.onec_client(), tasks.ledger())


def task_reconcile_and_report(meta: dict) -> dict:
    from ledgerlink import tasks

    return reconcile_and_report(meta, tasks.billing_engine(), tasks.onec_client(), tasks.ledger()).as_dict()


def count_in_target(snapshot: dict) -> tuple[int, str]:
    """Active counterparties 1C holds of those Ledgerlink wrote."""
    from ledgerlink import tasks

    known = {target_key for _, target_key in snapshot.values() if target_key}
    target = counterparties.read_ours(tasks.onec_client(), known)
    return (0 if target.empty else int((target["DeletionMark"] == False).sum())), "1C holds"  # noqa: E712


STEPS = FlowSteps(extract=task_extract, gate=task_gate, load=task_load, reconcile_and_report=task_reconcile_and_report,
                  count_in_target=count_in_target)
