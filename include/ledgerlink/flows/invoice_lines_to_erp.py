"""Billing invoice lines → the ERP's book of billed lines (flow ``billing_invoice_lines_to_erp``), nightly.

The SQL path of the spine, built for volume: chunked reads, integer minor units in the hot path, one gate
run per chunk, COPY + one upsert per chunk, bulk ledger writes, and reconciliation summed by the databases.
"""
from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ledgerlink import tasks
from ledgerlink.billing.extract import (LINES_FROM, content_hash_value_sql, duplicate_keys, invoice_line_fingerprint,
                                       read_invoice_headers, read_invoice_lines, read_invoice_lines_by_key)
from ledgerlink.billing.figures import invoice_line_figures
from ledgerlink.delivery import ChunkDelivery
from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.errors import GateFailed
from ledgerlink.flows import task_steps
from ledgerlink.flows.closing import close_run, held_back_rows
from ledgerlink.flows.params import RunParams
from ledgerlink.flows.spec import declared
from ledgerlink.flows.state import Outcomes, RunState
from ledgerlink.flows.steps import blocked_on_gate_failure, gate_staged
from ledgerlink.flows.staging import read_column, read_frame, read_json, stage_frame, stage_json
from ledgerlink.ledger import CREATE, UPDATE, Ledger
from ledgerlink.loads.sql import delete_keys, upsert_frame
from ledgerlink.reconcile import Figures, compare, figures, to_major
from ledgerlink.report import RunSummary
from ledgerlink.tracking import HASH_COLUMN, KEY_COLUMN, diff, next_watermark, read_from, with_keys_and_hashes

log = logging.getLogger(__name__)
SPEC = declared("billing_invoice_lines_to_erp", entity="invoice_line", source="billing", target="erp",
                carries=[c for c in erp_lines.COLUMNS if c not in ("line_id", "content_hash")])
FLOW = SPEC.id
WATERMARK = "updated_at"
HEADER_FLOW = f"{FLOW}:invoice_headers"  # the invoice fields each line carries, as last loaded
CONTENT_COLUMNS = SPEC.content_columns  # what the map says the flow carries, key first
BULK_LINES = 50_000  # a load this big refreshes the ledger's and the ERP table's planner statistics


def extract(run_id: str, billing: sa.Engine, ledger: Ledger, chunk_rows: int = 200_000,
            params: RunParams = RunParams()) -> RunState:
    """Stage the changed lines in chunks; deletions are snapshot keys billing no longer has.

    Memory follows the chunk, not the table: each chunk is diffed against the snapshot hashes of its own
    keys. What the watermark cannot see (a deletion, a line committed late, an edit that did not move
    ``updated_at``, a line held back before) is found by comparing billing's content fingerprint with the
    snapshot's, and, when they disagree, every line's hash (see :func:`_compare_every_line`).
    """
    ledger.start_run(run_id, FLOW)  # takes the flow's lease: a second run at once stops here
    if params.partial:
        return _extract_part(run_id, billing, ledger, chunk_rows, params)
    if params.dry_run:
        state = _extract_all(run_id, billing, ledger, chunk_rows)
        return dataclasses.replace(state, params=params.as_dict())
    return _extract_all(run_id, billing, ledger, chunk_rows)


def _extract_part(run_id: str, billing: sa.Engine, ledger: Ledger, chunk_rows: int, params: RunParams) -> RunState:
    """A run for one customer or a date range: the lines of that part whose content differs from what the ERP
    acknowledged. Nothing is deleted and the watermark stays (the next full run sees every other change)."""
    staged = _Staged(run_id, fingerprinting=False)
    for index, chunk in enumerate(read_invoice_lines(billing, None, chunk_rows, CONTENT_COLUMNS)):
        chunk = params.keep(chunk, customer_column="customer_id", date_column="issue_date")
        if chunk.empty:
            continue
        batch = with_keys_and_hashes(chunk, ["line_id"], CONTENT_COLUMNS)
        staged.add(f"changes_{index:04d}", batch, ledger.snapshot_hashes(FLOW, batch[KEY_COLUMN].tolist()))
    counts = staged.counts
    log.info("Billing invoice lines of %s: %d read; %d new, %d changed", params.describe(), counts["read"],
             counts["new"], counts["changed"])
    return RunState(run_id=run_id, **counts, batch=staged.parts, source_keys=counts["read"],
                    deletions=stage_json(FLOW, run_id, "deletions", []), params=params.as_dict())


def _extract_all(run_id: str, billing: sa.Engine, ledger: Ledger, chunk_rows: int) -> RunState:
    """:func:`extract` of a whole night."""
    snapshot = ledger.snapshot_fingerprint(FLOW)
    if not snapshot[0]:  # a first load reads every line: there is nothing it could miss
        return _extract(run_id, billing, ledger, chunk_rows, snapshot, None)
    # Billing hashes every line and sums the hashes while the ledger and the changes are read.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="billing-fingerprint") as pool:
        billing_fingerprint = pool.submit(invoice_line_fingerprint, billing, CONTENT_COLUMNS)
        return _extract(run_id, billing, ledger, chunk_rows, snapshot, billing_fingerprint)


class _Staged:
    """The changes staged so far, with what they do to the snapshot's fingerprint once acknowledged."""

    def __init__(self, flow_run: str, *, fingerprinting: bool):
        self.run_id = flow_run
        self.parts: list[str] = []
        self.counts = {"read": 0, "new": 0, "changed": 0, "unchanged": 0}
        # Sum of the new hashes sent minus the acknowledged hashes they replace; only when billing's fingerprint
        # is compared (a first load reads everything: summing a million hashes would buy nothing).
        self.fingerprinting = fingerprinting
        self.hash_delta = 0

    def add(self, name: str, batch: pd.DataFrame, known: dict[str, str]) -> pd.DataFrame:
        changes = diff(batch, known, None)
        to_send = changes.to_send
        to_send["_op"] = changes.operations(CREATE, UPDATE)
        self.counts["read"] += len(batch)
        for what in ("new", "changed", "unchanged"):
            self.counts[what] += changes.counts()[what]
        if self.fingerprinting:
            self.hash_delta += _hash_sum(to_send[HASH_COLUMN]) - _hash_sum(changes.changed[KEY_COLUMN].map(known))
        if len(to_send):
            self.parts.append(stage_frame(FLOW, self.run_id, name, to_send))
        return to_send


def _hash_sum(hashes) -> int:
    """Exact sum of 64-bit hashes written as decimal text (split in halves: no int64 overflow, no Python loop)."""
    values = pd.to_numeric(pd.Series(hashes, dtype="string"), errors="coerce").dropna().to_numpy(dtype=np.int64)
    return int((values >> 32).sum()) * (1 << 32) + int((values & 0xFFFFFFFF).sum())


def _extract(run_id: str, billing: sa.Engine, ledger: Ledger, chunk_rows: int, snapshot: tuple[int, int | None],
             billing_fingerprint) -> RunState:
    """:func:`extract`, given the snapshot's (line count, content hash sum) and the future of billing's (None on
    a first load)."""
    watermark = ledger.watermark(FLOW, WATERMARK)
    snapshot_size, snapshot_sum = snapshot
    # A key billing holds twice: every copy goes to the gate together, which holds them all back. An invoice
    # held twice doubles each of its lines through the join: those lines are held back the same way.
    twins = set(duplicate_keys(billing, "invoice_lines", "line_id"))
    doubled_invoices = duplicate_keys(billing, "invoices", "invoice_id")
    if doubled_invoices:
        twins |= set(read_invoice_lines_by_key(billing, doubled_invoices, key="l.invoice_id")["line_id"].dropna())
        log.warning("Billing holds %d invoice(s) more than once: their lines are held back: %s",
                    len(doubled_invoices), doubled_invoices[:10])
    staged, highest = _Staged(run_id, fingerprinting=billing_fingerprint is not None), watermark
    for index, chunk in enumerate(read_invoice_lines(billing, read_from(watermark), chunk_rows, CONTENT_COLUMNS)):
        batch = with_keys_and_hashes(chunk, ["line_id"], CONTENT_COLUMNS)
        highest = next_watermark(batch, WATERMARK, highest)
        if twins:
            batch = batch[~batch[KEY_COLUMN].isin(twins)].reset_index(drop=True)
        known = ledger.snapshot_hashes(FLOW, batch[KEY_COLUMN].tolist()) if snapshot_size else {}
        staged.add(f"changes_{index:04d}", batch, known)
    # A line carries its invoice's customer and date: lines of invoices whose header moved are read too.
    header_parts, moved = [], []
    headers_known = ledger.snapshot_fingerprint(HEADER_FLOW)[0] > 0
    # Headers come through the driver as Python rows (heavier per row than the Arrow path): smaller chunks.
    for index, chunk in enumerate(read_invoice_headers(billing, read_from(watermark), min(chunk_rows, 50_000))):
        headers = with_keys_and_hashes(chunk, ["invoice_id"], ["invoice_id", "customer_id", "issue_date"])
        acknowledged = ledger.snapshot_hashes(HEADER_FLOW, headers[KEY_COLUMN].tolist()) if headers_known else {}
        moved += [k for k, h in zip(headers[KEY_COLUMN], headers[HASH_COLUMN])
                  if k in acknowledged and acknowledged[k] != h]
        header_parts.append(stage_frame(FLOW, run_id, f"headers_{index:04d}", headers[[KEY_COLUMN, HASH_COLUMN]]))
    moved.sort()
    if moved:
        already = {k for part in staged.parts for k in read_column(part, KEY_COLUMN)} | twins
        batch = with_keys_and_hashes(read_invoice_lines_by_key(billing, moved, key="l.invoice_id",
                                                               hash_columns=CONTENT_COLUMNS), ["line_id"],
                                     CONTENT_COLUMNS)
        batch = batch[~batch[KEY_COLUMN].isin(already)].reset_index(drop=True)
        sent = staged.add("changes_headers", batch, ledger.snapshot_hashes(FLOW, batch[KEY_COLUMN].tolist()))
        log.info("Billing invoices: %d header(s) moved (customer or date); %d of their lines changed",
                 len(moved), len(sent))
    source_count, source_sum = billing_fingerprint.result() if billing_fingerprint else (None, None)
    deleted: list[str] = []
    if snapshot_size and not (
            source_sum is not None and snapshot_sum is not None and not twins
            and source_count == snapshot_size + staged.counts["new"]
            and source_sum == snapshot_sum + staged.hash_delta):
        deleted = _compare_every_line(billing, ledger, staged, twins, chunk_rows)
    if twins:
        copies = with_keys_and_hashes(read_invoice_lines_by_key(billing, sorted(twins), hash_columns=CONTENT_COLUMNS),
                                      ["line_id"], CONTENT_COLUMNS)
        acknowledged = ledger.snapshot_hashes(FLOW, sorted(twins))
        copies["_op"] = pd.array([UPDATE if k in acknowledged else CREATE for k in copies[KEY_COLUMN]], dtype="string")
        staged.parts.append(stage_frame(FLOW, run_id, "duplicate_keys", copies))
        staged.counts["read"] += len(copies)
        staged.counts["changed"] += int((copies["_op"] == UPDATE).sum())
        staged.counts["new"] += int((copies["_op"] == CREATE).sum())
        log.warning("Billing holds %d line key(s) more than once (%d rows): all of them are held back: %s",
                    len(twins), len(copies), sorted(twins)[:10])
    counts = staged.counts
    log.info("Billing invoice lines: %d read since %s; %d new, %d changed, %d deleted",
             counts["read"], watermark or "the beginning", counts["new"], counts["changed"], len(deleted))
    return RunState(run_id=run_id, **counts, initial=snapshot_size == 0, headers=header_parts,
                    deleted=len(deleted), batch=staged.parts,
                    source_keys=source_count if source_count is not None else counts["read"],  # a first load: all
                    deletions=stage_json(FLOW, run_id, "deletions", deleted), watermark_read=highest)


def _compare_every_line(billing: sa.Engine, ledger: Ledger, staged: _Staged, twins: set[str],
                        chunk_rows: int) -> list[str]:
    """Every billing line's hash against the snapshot: lines that differ and were not read by the watermark
    (edited without moving ``updated_at``, committed late, held back before) are staged; returns the snapshot
    keys billing no longer has (deletions).

    Run when billing's fingerprint disagrees with the snapshot's plus tonight's changes, or when a database
    cannot fingerprint: memory follows the chunk, but for the set of billing's keys."""
    already = {k for part in staged.parts for k in read_column(part, KEY_COLUMN)} | twins
    source_keys: set[str] = set()
    before = dict(staged.counts)
    for index, chunk in enumerate(read_invoice_lines(billing, None, chunk_rows, CONTENT_COLUMNS)):
        batch = with_keys_and_hashes(chunk, ["line_id"], CONTENT_COLUMNS)
        source_keys.update(batch[KEY_COLUMN].dropna())
        batch = batch[~batch[KEY_COLUMN].isin(already)].reset_index(drop=True)
        staged.add(f"changes_unseen_{index:04d}", batch, ledger.snapshot_hashes(FLOW, batch[KEY_COLUMN].tolist()))
    found_new = staged.counts["new"] - before["new"]
    found_changed = staged.counts["changed"] - before["changed"]
    # Only what differed counts as read: the rest was compared by its hash, and is counted once as unchanged.
    staged.counts["read"] = before["read"] + found_new + found_changed
    staged.counts["unchanged"] = before["unchanged"]
    deleted = sorted(key for key in ledger.snapshot_keys(FLOW) if key not in source_keys)
    if found_new or found_changed:
        log.warning("Billing invoice lines the watermark did not show: %d not yet in the ERP (committed late or "
                    "held back before), %d changed without a new updated_at; both are sent now",
                    found_new, found_changed)
    return deleted


def gate(state: RunState, ledger: Ledger) -> RunState:
    """Gate every staged chunk; a blocking failure in any chunk stops the run before anything is loaded."""
    with blocked_on_gate_failure(ledger, SPEC, state.run_id):
        # A first load brings the whole table; after it, a run far above the usual volume is a runaway extract.
        # Chunks are gated one by one; the run's volume is checked once, over all of them.
        volume, per = (SPEC.volume_total, "in total") if state.initial else (SPEC.volume_per_run, "per run")
        if volume is not None and state.new + state.changed > volume:
            raise GateFailed(SPEC.entity, [f"batch size within the expected volume: {state.new + state.changed} "
                                           f"lines to send, the exchange map expects at most {volume} {per}"], [], None)
        return gate_staged(state, ledger, SPEC)


def load(state: RunState, erp: sa.Engine, ledger: Ledger) -> RunState:
    """Upsert each gated chunk in one transaction, then acknowledge its lines; delete what billing deleted."""
    run_id = state.run_id
    ledger.hold_lease(FLOW, run_id)
    if RunParams.of(state.params).dry_run:
        return _plan_only(state)
    erp_lines.ensure_table(erp)
    deleted_keys = read_json(state.deletions)
    delivery = ChunkDelivery(ledger, flow=FLOW, run_id=run_id, target="erp", entity="invoice_line",
                             chunks=len(state.batch))
    created = updated = 0
    sent = Figures(count=0)  # summed chunk by chunk: memory stays one chunk
    changed_amounts: list[dict] = []
    for index, part in enumerate(state.batch):
        batch = read_frame(part)
        if batch.empty:
            continue
        # The run's figures count the whole batch; a retry only sends what an earlier attempt of it did not
        # get acknowledged (the ledger then shows one delivery per line, and the chunk's attempts counted).
        created += int((batch["_op"] == CREATE).sum())
        updated += int((batch["_op"] == UPDATE).sum())
        sent = _add_figures(sent, figures(batch))
        first_load = delivery.is_first_delivery(index, batch)  # none of these keys was ever loaded
        batch = delivery.pending(index, batch)
        if batch.empty:
            continue
        if len(changed_amounts) < AMOUNTS_COMPARED and not first_load:
            changed_amounts += _changed_amounts(erp, batch, AMOUNTS_COMPARED - len(changed_amounts))
        with delivery.writing(index, batch, expect_new=first_load):
            upsert_frame(erp, erp_lines.TABLE, batch.rename(columns={HASH_COLUMN: "content_hash"}),
                         [erp_lines.KEY], erp_lines.COLUMNS, expect_new=first_load)
    delivery.delete(deleted_keys, lambda keys: delete_keys(erp, erp_lines.TABLE, erp_lines.KEY, keys))
    if created + updated >= BULK_LINES:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="erp-statistics") as pool:
            erp_statistics = pool.submit(erp_lines.refresh_statistics, erp)  # two servers, at the same time
            ledger.refresh_statistics()
            erp_statistics.result()
    for part in state.headers:
        headers = read_frame(part)
        ledger.put_snapshot(HEADER_FLOW, headers[KEY_COLUMN], headers[HASH_COLUMN])
    # Held-back lines do not hold the watermark: they are not in the snapshot, so the next extract finds
    # them (see _compare_every_line) and gates them again, without rescanning everything after them.
    if state.watermark_read:
        ledger.set_watermark(FLOW, WATERMARK, state.watermark_read)
    log.info("Loaded into the ERP: %d created, %d updated, %d deleted", created, updated, len(deleted_keys))
    return dataclasses.replace(state, outcomes=Outcomes(created=created, updated=updated, deleted=len(deleted_keys)),
                               # As exact decimal text: Airflow's serialiser would turn a Decimal into a float.
                               sent_totals=[{k: str(v) for k, v in row.items()} for row in sent.as_rows()],
                               changed_amounts=changed_amounts)


def _plan_only(state: RunState) -> RunState:
    """A dry run's load: what would go, counted and summed; nothing written to the ERP or the ledger."""
    created = updated = 0
    planned = Figures(count=0)
    for part in state.batch:
        batch = read_frame(part)
        created += int((batch["_op"] == CREATE).sum())
        updated += int((batch["_op"] == UPDATE).sum())
        planned = _add_figures(planned, figures(batch))
    deleted = len(read_json(state.deletions) or [])
    log.info("dry run: would create %d, update %d and delete %d line(s) in the ERP; nothing sent", created, updated,
             deleted)
    return dataclasses.replace(state, outcomes=Outcomes(created=created, updated=updated, deleted=deleted),
                               sent_totals=[{k: str(v) for k, v in row.items()} for row in planned.as_rows()])


AMOUNTS_COMPARED = 1000  # updated lines whose old amounts are read for the summary (a query per chunk, capped)


def _changed_amounts(erp: sa.Engine, batch: pd.DataFrame, limit: int) -> list[dict]:
    """Lines of this chunk whose money the update changes, old → new as exact decimal text (XCom-safe): the
    ERP's amounts are read before the chunk replaces them. At most ``limit`` updated lines are compared."""
    updated = batch[batch["_op"] == UPDATE].head(limit)
    if updated.empty:
        return []
    held = erp_lines.amounts_of(erp, updated[KEY_COLUMN].tolist())
    found = []
    for row in updated.to_dict("records"):
        old = held.get(row[KEY_COLUMN])
        if old is None:
            continue
        for column in ("gross_minor", "net_minor", "vat_minor"):
            if old[column] is not None and int(old[column]) != int(row[column]):
                found.append({"key": row[KEY_COLUMN], "field": column.removesuffix("_minor"),
                              "currency": row["currency"],
                              "old": str(to_major(int(old[column]), old["currency"])),
                              "new": str(to_major(int(row[column]), row["currency"]))})
                break  # one line, one entry: the gross when it moved, else the first amount that did
    return found


def _add_figures(left: Figures, right: Figures) -> Figures:
    """Exact sum of two Figures (Decimal totals per currency and VAT rate)."""
    totals = {group: dict(amounts) for group, amounts in left.totals.items()}
    for group, amounts in right.totals.items():
        into = totals.setdefault(group, {})
        for column, amount in amounts.items():
            into[column] = into[column] + amount if column in into else amount
    return Figures(count=left.count + right.count, totals=totals)


def reconcile_and_report(state: RunState, billing: sa.Engine, erp: sa.Engine, ledger: Ledger) -> RunSummary:
    """Counts and totals per currency and VAT rate, billing against ERP, leaving out rows held back."""
    run_id = state.run_id
    ledger.hold_lease(FLOW, run_id)
    held = ledger.quarantined(flow=FLOW, run_id=run_id)
    held_keys = sorted({q["source_key"] for q in held})
    params = RunParams.of(state.params)
    if params.dry_run or params.partial:
        return _close_part(state, ledger, held, params)
    # Each side is summed by its own database: asked at once, the two servers work at the same time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile") as pool:
        billing_side = pool.submit(invoice_line_figures, billing, held_keys)
        target = erp_lines.target_figures(erp, held_keys)
        source = billing_side.result()
    differences = compare(FLOW, source, target, what="invoice lines")
    content_differences, stale = compare_content(billing, erp, held_keys)
    differences += content_differences
    if stale and SPEC.conflict_policy == "master_wins":
        # The exchange map's policy: billing wins. The ERP's copies are marked stale and the ledger forgets them,
        # so the next run sends billing's lines again (recorded as deliveries) over whatever the ERP now holds.
        erp_lines.mark_stale(erp, sorted(stale))
        ledger.forget(FLOW, sorted(stale))
        differences.append(f"billing is the master: the next run re-sends {len(stale)} line(s) to the ERP: "
                           f"{sorted(stale)[:DIFFERING_KEYS_SHOWN]}")
    done = state.outcomes or Outcomes()
    summary = RunSummary(
        flow=FLOW, run_id=run_id, entity="invoice_line", target="ERP billed_invoice_lines",
        sent=done.created + done.updated, created=done.created, updated=done.updated,
        unchanged=state.source_keys - state.new - state.changed, deleted=done.deleted, changes=state.changes,
        quarantined=state.quarantined, rejected=0, totals=state.sent_totals, reconciliation=differences,
        reconciliation_detail=f"billing {source.count} lines, ERP {target.count} lines, every total and every "
                              f"line's content equal",
        gate_report=state.gate_report, held_back=held_back_rows(held), source="billing", target_system="ERP",
        source_count=source.count, target_count=target.count,
        source_totals=_as_text(source.as_rows()), target_totals=_as_text(target.as_rows()),
        changed_amounts=state.changed_amounts)
    return close_run(ledger, summary, source_totals=source.as_rows(), target_totals=target.as_rows())


DIFFERING_KEYS_SHOWN = 10


def _close_part(state: RunState, ledger: Ledger, held: list[dict], params: RunParams) -> RunSummary:
    """The summary of a dry run or a run over part of billing (one customer, a date range): what it sent (or
    would have); the whole book is reconciled by the next full run, not compared against a part."""
    done = state.outcomes or Outcomes()
    summary = RunSummary(
        flow=FLOW, run_id=state.run_id, entity="invoice_line", target="ERP billed_invoice_lines",
        sent=done.created + done.updated, created=done.created, updated=done.updated, unchanged=state.unchanged,
        deleted=done.deleted, changes=state.changes + state.quarantined, quarantined=state.quarantined,
        totals=state.sent_totals, changed_amounts=state.changed_amounts, source="billing", target_system="ERP",
        reconciliation_detail="not compared: a dry run sends nothing" if params.dry_run and not params.partial else
                              f"not compared: a run over {params.describe()}; the next full run reconciles the "
                              f"whole book",
        gate_report=state.gate_report, held_back=held_back_rows(held), dry_run=params.dry_run)
    return close_run(ledger, summary)


def _as_text(rows: list[dict]) -> list[dict]:
    """Totals rows with exact decimal text (the ledger keeps the summary as JSON)."""
    return [{k: str(v) for k, v in row.items()} for row in rows]


def compare_content(billing: sa.Engine, erp: sa.Engine, held_keys: list[str]) -> tuple[list[str], set[str]]:
    """Every line's content, billing against the ERP, leaving out lines held back: a hash per line summed per
    month of issue on both sides; for a month that differs, the lines that differ are named (capped, with a
    count). Counts and money alone miss a changed description or customer.

    Both on PostgreSQL, each server hashes its own lines (the same functions, so the same hashes); otherwise
    both sides are hashed by pandas over the lines' text form. Returns the differences and the billing lines
    the ERP does not hold as billing has them (missing there, or with other values)."""
    on_servers = billing.dialect.name == erp.dialect.name == "postgresql"
    sides = (_LineSide(billing, "billing", on_servers), _LineSide(erp, "erp", on_servers))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-content") as pool:
        source_months = pool.submit(sides[0].by_month, held_keys)
        target_months = sides[1].by_month(held_keys)
        source_months = source_months.result()
    differing_months = sorted((m for m in set(source_months) | set(target_months)
                               if source_months.get(m) != target_months.get(m)), key=str)
    differences, stale = [], set()
    if not differing_months:
        return differences, stale
    # The lines of every month that differs, read once per side (not once per month).
    source_lines, target_lines = (side.lines_of_months(differing_months, held_keys) for side in sides)
    for month in differing_months:
        source_rows, target_rows = source_lines.get(month, {}), target_lines.get(month, {})
        differing = sorted(k for k in set(source_rows) | set(target_rows) if source_rows.get(k) != target_rows.get(k))
        only_source = sum(1 for k in differing if k not in target_rows)
        only_target = sum(1 for k in differing if k not in source_rows)
        stale.update(k for k in differing if k in source_rows)
        if not differing:
            differences.append(f"content of lines issued in {month or 'no month (no invoice)'}: the sums differ but "
                               f"no single line does (a key held twice on one side)")
            continue
        differences.append(
            f"content of lines issued in {month or 'no month (no invoice)'}: {len(differing)} line(s) differ "
            f"({only_source} only in billing, {only_target} only in the ERP, "
            f"{len(differing) - only_source - only_target} with other values): "
            f"{differing[:DIFFERING_KEYS_SHOWN]}{' …' if len(differing) > DIFFERING_KEYS_SHOWN else ''}")
    return differences, stale


class _LineSide:
    """One side of the content comparison: billing's lines (with their invoice's customer and date) or the ERP's."""

    def __init__(self, engine: sa.Engine, side: str, on_server: bool):
        self.engine, self.on_server = engine, on_server
        if side == "billing":
            self.key, self.month = "l.line_id", "substr(i.issue_date, 1, 7)"
            self.source = LINES_FROM
            self.columns = [f"i.{c}" if c in ("customer_id", "issue_date") else f"l.{c}" for c in CONTENT_COLUMNS]
            self.hash = content_hash_value_sql(CONTENT_COLUMNS)
        else:
            self.key, self.month = "line_id", "substr(issue_date, 1, 7)"
            self.source = f" FROM {erp_lines.TABLE}"
            self.columns = list(CONTENT_COLUMNS)
            self.hash = content_hash_value_sql(CONTENT_COLUMNS, qualify=lambda column: column)

    def _held(self, held_keys: list[str]) -> tuple[str, dict]:
        if not held_keys or not self.on_server:
            return "", {}
        return f" WHERE NOT ({self.key} = ANY(:held))", {"held": list(held_keys)}

    def by_month(self, held_keys: list[str]) -> dict[str | None, tuple[int, int]]:
        """month -> (lines, exact sum of their hashes)."""
        if self.on_server:
            where, params = self._held(held_keys)
            with self.engine.connect() as conn:
                return {month: (int(count), int(total)) for month, count, total in conn.execute(sa.text(
                    f"SELECT {self.month}, count(*), sum({self.hash}){self.source}{where} GROUP BY 1"), params)}
        months: dict[str | None, tuple[int, int]] = {}
        for frame in self._hashed_frames(held_keys):
            # Exact sums of 64-bit hashes per month: the high and low halves summed apart (no int64 overflow).
            hashes = frame["hash"].to_numpy(dtype=np.int64)
            halves = pd.DataFrame({"month": frame["month"], "high": hashes >> 32, "low": hashes & 0xFFFFFFFF})
            for month, (count, high, low) in halves.groupby("month", dropna=False).agg(
                    count=("high", "size"), high=("high", "sum"), low=("low", "sum")).iterrows():
                month = None if pd.isna(month) else month
                seen, total = months.get(month, (0, 0))
                months[month] = (seen + int(count), total + int(high) * (1 << 32) + int(low))
        return months

    def lines_of_months(self, months: list[str | None], held_keys: list[str]) -> dict[str | None, dict[str, int]]:
        """month -> line key -> its hash, for the lines of these months, in one read."""
        found: dict[str | None, dict[str, int]] = {}
        if self.on_server:
            where, params = self._held(held_keys)
            named = [m for m in months if m is not None]
            conditions = ([f"{self.month} IN :months"] if named else []) + \
                ([f"{self.month} IS NULL"] if None in months else [])
            condition = "(" + " OR ".join(conditions) + ")"
            where = f"{where} AND {condition}" if where else f" WHERE {condition}"
            statement = sa.text(f"SELECT {self.month}, {self.key}, {self.hash}{self.source}{where}")
            if named:
                statement = statement.bindparams(sa.bindparam("months", expanding=True))
            with self.engine.connect() as conn:
                for month, key, value in conn.execute(statement, {**params, **({"months": named} if named else {})}):
                    found.setdefault(month, {})[key] = int(value)
            return found
        wanted = set(months)
        for frame in self._hashed_frames(held_keys):
            month_of = frame["month"].astype(object).where(frame["month"].notna(), None)
            chosen = month_of.isin(wanted).to_numpy(dtype=bool) | (frame["month"].isna().to_numpy(dtype=bool)
                                                                  & (None in wanted))
            for month, key, value in zip(month_of[chosen], frame["key"][chosen], frame["hash"][chosen]):
                found.setdefault(month, {})[key] = int(value)
        return found

    def _hashed_frames(self, held_keys: list[str], rows_per_frame: int = 50_000):
        """key, month and a 64-bit hash of the line's text form, a frame at a time."""
        held = set(held_keys)
        sql = f"SELECT {self.key}, {self.month}, {', '.join(self.columns)}{self.source}"
        with self.engine.connect().execution_options(stream_results=True) as conn:
            result = conn.execute(sa.text(sql))
            while rows := result.fetchmany(rows_per_frame):
                frame = pd.DataFrame.from_records(rows, columns=["key", "month", *CONTENT_COLUMNS])
                frame = frame[~frame["key"].isin(held)].reset_index(drop=True)
                text = frame[CONTENT_COLUMNS].astype("string")  # both sides in one form: text
                hashes = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64).view(np.int64)
                yield pd.DataFrame({"key": frame["key"].astype("string"), "month": frame["month"], "hash": hashes})


def run_all(run_id: str, billing: sa.Engine, erp: sa.Engine, ledger: Ledger, chunk_rows: int = 200_000) -> RunSummary:
    state = extract(run_id, billing, ledger, chunk_rows)
    state = gate(state, ledger)
    state = load(state, erp, ledger)
    return reconcile_and_report(state, billing, erp, ledger)


def count_in_target(snapshot: dict) -> tuple[int, str]:
    """Lines the ERP's book holds."""
    return erp_lines.count_loaded(tasks.erp_engine()), "ERP holds"


# The four Airflow tasks (ledgerlink.spine), each opening the connections it needs.
STEPS = task_steps(extract=extract, gate=gate, load=load, reconcile_and_report=reconcile_and_report,
                   source=tasks.billing_engine, target=tasks.erp_engine,
                   count_in_target=count_in_target)
