"""Billing invoice lines → the ERP's book of billed lines (flow ``billing_invoice_lines_to_erp``), nightly.

The SQL path of the spine, built for volume: chunked reads, integer minor units in the hot path, one gate
run per chunk, COPY + one upsert per chunk, bulk ledger writes, and reconciliation summed by the databases.
"""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import sqlalchemy as sa

from ledgerlink import settings
from ledgerlink.billing.extract import (key_fingerprint, read_invoice_line_keys, read_invoice_lines,
                                       read_invoice_headers, read_invoice_lines_by_key,
                                       source_key_fingerprint)
from ledgerlink.billing.figures import invoice_line_figures
from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.errors import GateFailed, ReconciliationError
from ledgerlink.exchange_map import default_map
from ledgerlink.flows.staging import read_column, read_frame, read_json, stage_frame, stage_json
from ledgerlink.gates import run_gate, suite_for
from ledgerlink.ledger import CREATE, DELETE, UPDATE, Ledger, PlannedChange
from ledgerlink.loads.sql import delete_keys, upsert_frame
from ledgerlink.reconcile import Figures, compare, figures
from ledgerlink.report import RunSummary, write_workbook
from ledgerlink.tracking import HASH_COLUMN, KEY_COLUMN, diff, next_watermark, read_from, with_keys_and_hashes

log = logging.getLogger(__name__)
FLOW = "billing_invoice_lines_to_erp"
WATERMARK = "updated_at"
HEADER_FLOW = f"{FLOW}:invoice_headers"  # the invoice fields each line carries, as last loaded
CONTENT_COLUMNS = [c for c in erp_lines.COLUMNS if c != "content_hash"]
BULK_LINES = 50_000  # a load this big refreshes the ledger's and the ERP table's planner statistics


def extract(run_id: str, billing: sa.Engine, ledger: Ledger, chunk_rows: int = 200_000) -> dict:
    """Stage the changed lines in chunks; deletions are snapshot keys billing no longer has.

    Memory follows the chunk, not the table: each chunk is diffed against the snapshot hashes of its own
    keys, and deletions are found without holding every key when both databases can say cheaply that
    none happened (see :func:`_deleted_keys`).
    """
    # Billing counts and fingerprints its keys while the ledger and the changes are read: a line added or
    # deleted meanwhile makes the two sides differ, and then every key is compared (see _deleted_keys).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="billing-keys") as pool:
        billing_fingerprint = pool.submit(source_key_fingerprint, billing)
        return _extract(run_id, billing, ledger, chunk_rows, billing_fingerprint)


def _extract(run_id: str, billing: sa.Engine, ledger: Ledger, chunk_rows: int, billing_fingerprint) -> dict:
    """:func:`extract`, given the future of billing's (key count, key fingerprint)."""
    ledger.start_run(run_id, FLOW)
    watermark = ledger.watermark(FLOW, WATERMARK)
    snapshot_size, snapshot_print = ledger.snapshot_fingerprint(FLOW)
    parts, counts, highest = [], {"read": 0, "new": 0, "changed": 0, "unchanged": 0}, watermark
    new_print, new_keys = 0, set()
    for index, chunk in enumerate(read_invoice_lines(billing, read_from(watermark), chunk_rows, CONTENT_COLUMNS)):
        batch = with_keys_and_hashes(chunk, ["line_id"], CONTENT_COLUMNS)
        known = ledger.snapshot_hashes(FLOW, batch[KEY_COLUMN].tolist()) if snapshot_size else {}
        changes = diff(batch, known, None)
        to_send = changes.to_send
        to_send["_op"] = changes.operations(CREATE, UPDATE)
        counts["read"] += len(batch)
        for name in ("new", "changed", "unchanged"):
            counts[name] += changes.counts()[name]
        if snapshot_size and len(changes.new):
            new_print += key_fingerprint(billing, changes.new[KEY_COLUMN].tolist())
            new_keys.update(changes.new[KEY_COLUMN])
        highest = next_watermark(batch, WATERMARK, highest)
        if len(to_send):
            parts.append(stage_frame(FLOW, run_id, f"changes_{index:04d}", to_send))
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
        staged = {k for part in parts for k in read_column(part, KEY_COLUMN)}
        batch = with_keys_and_hashes(read_invoice_lines_by_key(billing, moved, key="l.invoice_id",
                                                               hash_columns=CONTENT_COLUMNS), ["line_id"],
                                     CONTENT_COLUMNS)
        batch = batch[~batch[KEY_COLUMN].isin(staged)].reset_index(drop=True)
        changes = diff(batch, ledger.snapshot_hashes(FLOW, batch[KEY_COLUMN].tolist()), None)
        if len(changes.changed):
            changes.changed["_op"] = UPDATE
            counts["read"] += len(batch)
            counts["changed"] += len(changes.changed)
            counts["unchanged"] += changes.unchanged
            parts.append(stage_frame(FLOW, run_id, "changes_headers", changes.changed))
        log.info("Billing invoices: %d header(s) moved (customer or date); %d of their lines changed",
                 len(moved), len(changes.changed))
    deleted, source_count, unseen = _deleted_keys(billing, ledger, billing_fingerprint.result(), snapshot_size,
                                                  snapshot_print, counts["new"], new_print, new_keys)
    if unseen:
        # Committed late, with an updated_at behind the watermark's overlap: read them by key.
        late = with_keys_and_hashes(read_invoice_lines_by_key(billing, sorted(unseen), hash_columns=CONTENT_COLUMNS),
                                    ["line_id"], CONTENT_COLUMNS)
        late["_op"] = CREATE
        counts["read"] += len(late)
        counts["new"] += len(late)
        parts.append(stage_frame(FLOW, run_id, "changes_late", late))
        log.info("Billing invoice lines: %d line(s) committed behind the watermark, read by key", len(late))
    log.info("Billing invoice lines: %d read since %s; %d new, %d changed, %d deleted",
             counts["read"], watermark or "the beginning", counts["new"], counts["changed"], len(deleted))
    return {"run_id": run_id, **counts, "initial": snapshot_size == 0,
            "headers": header_parts, "deleted": len(deleted), "source_keys": source_count, "parts": parts,
            "deletions": stage_json(FLOW, run_id, "deletions", deleted), "watermark_read": highest}


def _deleted_keys(billing: sa.Engine, ledger: Ledger, source_fingerprint: tuple[int, int | None], snapshot_size: int,
                  snapshot_print: int | None, new_count: int, new_print: int,
                  new_keys: set[str]) -> tuple[list[str], int, set[str]]:
    """Snapshot keys billing no longer has, how many keys billing holds, and billing keys neither in the
    snapshot nor read this run (committed late, behind the watermark).

    Billing's keys = (snapshot − deleted) + (keys not in the snapshot). When billing's key count and key
    fingerprint (a sum of 64-bit key hashes, computed by PostgreSQL on both sides) equal the snapshot's plus
    this run's new keys, nothing was deleted and no key list is read. Otherwise, or when a database cannot
    fingerprint, every billing key is read and the snapshot keys are streamed against them.
    ``source_fingerprint``: billing's (count, fingerprint), from :func:`source_key_fingerprint`.
    """
    source_count, source_print = source_fingerprint
    if snapshot_size == 0:
        return [], source_count, set()  # a first run reads everything
    if (snapshot_print is not None and source_print is not None
            and source_count == snapshot_size + new_count and source_print == snapshot_print + new_print):
        return [], source_count, set()
    source_keys = read_invoice_line_keys(billing)
    deleted, acknowledged = [], set()
    for key in ledger.snapshot_keys(FLOW):
        acknowledged.add(key)
        if key not in source_keys:
            deleted.append(key)
    return sorted(deleted), len(source_keys), source_keys - acknowledged - new_keys


def gate(meta: dict, ledger: Ledger) -> dict:
    """Gate every staged chunk; a blocking failure in any chunk stops the run before anything is loaded."""
    run_id = meta["run_id"]
    entity = default_map().entities["invoice_line"]
    # A first load brings the whole table; after it, a run far above the usual volume is a runaway extract.
    volume, per = (entity.volume_total, "in total") if meta.get("initial") else (entity.volume_per_run, "per run")
    to_send = meta["new"] + meta["changed"]
    if volume is not None and to_send > volume:
        # Chunks are gated one by one; the run's volume is checked once, over all of them.
        raise GateFailed("invoice_line", [f"batch size within the expected volume: {to_send} lines to send, "
                                          f"the exchange map expects at most {volume} {per}"], [], None)
    suite = suite_for("invoice_line", max_rows=None)
    ledger.clear_quarantine(run_id, FLOW)
    gated, quarantined, report = [], 0, ""
    for index, part in enumerate(meta["parts"]):
        result = run_gate(read_frame(part), suite, run_id=run_id, flow=FLOW,
                          report_dir=settings.reports_dir(FLOW, run_id) / f"part_{index:04d}", ledger=ledger)
        quarantined += len(result.quarantined)
        report = str(result.report_html)
        # Nothing held back: the staged chunk is what passed, so it is not written a second time.
        gated.append(stage_frame(FLOW, run_id, f"gated_{index:04d}", result.passed) if result.quarantined else part)
    return {**meta, "parts": gated, "quarantined": quarantined, "gate_report": report}


def load(meta: dict, erp: sa.Engine, ledger: Ledger) -> dict:
    """Upsert each gated chunk in one transaction, then acknowledge its lines; delete what billing deleted."""
    run_id = meta["run_id"]
    erp_lines.ensure_table(erp)
    deleted_keys = read_json(meta["deletions"])
    # Lines are never open items (each is written once, acknowledged): only chunks are, so only this run's
    # chunk keys are still wanted; an open chunk of an abandoned run is closed as superseded.
    chunk_keys = [_chunk_key(run_id, i) for i in range(len(meta["parts"]))] + [_chunk_key(run_id, -1)]
    ledger.close_superseded(FLOW, set(chunk_keys))
    # Chunks an earlier attempt of this run already started: only their lines can be acknowledged already.
    attempted = {i["source_key"] for i in ledger.items(flow=FLOW, run_id=run_id)}
    created = updated = 0
    sent = Figures(count=0)  # summed chunk by chunk: memory stays one chunk
    for index, part in enumerate(meta["parts"]):
        batch = read_frame(part)
        if batch.empty:
            continue
        # The run's figures count the whole batch; a retry only sends what an earlier attempt of it did not
        # get acknowledged (the ledger then shows one delivery per line, and the chunk's attempts counted).
        created += int((batch["_op"] == CREATE).sum())
        updated += int((batch["_op"] == UPDATE).sum())
        sent = _add_figures(sent, figures(batch))
        retry = _chunk_key(run_id, index) in attempted
        if retry:
            batch = _not_yet_acknowledged(batch, ledger)
            if batch.empty:
                continue
        chunk_item = _chunk_in_flight(ledger, run_id, index, len(batch), "upsert")
        first_load = not retry and bool((batch["_op"] == CREATE).all())  # none of these keys was ever loaded
        # The ledger writes the chunk's lines while the ERP takes them, and commits once the ERP has.
        with ledger.recording_lines_alongside(FLOW, chunk_item, batch[KEY_COLUMN], batch[HASH_COLUMN], batch["_op"],
                                              expect_new=first_load):
            upsert_frame(erp, erp_lines.TABLE, batch.rename(columns={HASH_COLUMN: "content_hash"}),
                         [erp_lines.KEY], erp_lines.COLUMNS, expect_new=first_load)
    still_acknowledged = sorted(ledger.snapshot_hashes(FLOW, deleted_keys))  # deletions a retry has not done yet
    if still_acknowledged:
        chunk_item = _chunk_in_flight(ledger, run_id, -1, len(still_acknowledged), DELETE)
        delete_keys(erp, erp_lines.TABLE, erp_lines.KEY, still_acknowledged)
        ledger.record_confirmed_lines(FLOW, chunk_item, still_acknowledged, [None] * len(still_acknowledged),
                                      [DELETE] * len(still_acknowledged))
    if created + updated >= BULK_LINES:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="erp-statistics") as pool:
            erp_statistics = pool.submit(erp_lines.refresh_statistics, erp)  # two servers, at the same time
            ledger.refresh_statistics()
            erp_statistics.result()
    header_parts = meta["headers"] if isinstance(meta["headers"], list) else [meta["headers"]]  # one file before
    for part in header_parts:
        headers = read_frame(part)
        ledger.put_snapshot(HEADER_FLOW, headers[KEY_COLUMN], headers[HASH_COLUMN])
    # Held-back lines do not hold the watermark: they are not in the snapshot, so the next extract finds
    # them by key (see _deleted_keys) and gates them again, without rescanning everything after them.
    if meta["watermark_read"]:
        ledger.set_watermark(FLOW, WATERMARK, meta["watermark_read"])
    log.info("Loaded into the ERP: %d created, %d updated, %d deleted", created, updated, len(deleted_keys))
    return {**meta, "created": created, "updated": updated, "rejected": 0,
            # Amounts cross XCom as exact decimal text: Airflow's serialiser would turn a Decimal into a float.
            "sent_totals": [{k: str(v) for k, v in row.items()} for row in sent.as_rows()]}


def _chunk_key(run_id: str, index: int) -> str:
    """Short and unique per run (the item's run_id column names the run; keys are limited to 200 characters)."""
    run = hashlib.sha1(run_id.encode()).hexdigest()[:12]
    return f"chunk {'deletions' if index < 0 else f'{index:04d}'} of run {run}"


def _chunk_in_flight(ledger: Ledger, run_id: str, index: int, lines: int, operation: str) -> int:
    """The chunk's own ledger item, sent before the target's transaction; a retry continues it."""
    key = _chunk_key(run_id, index)
    item_ids = ledger.plan_and_mark_sent(run_id, FLOW, "erp", "invoice_line",
                                         [PlannedChange(key, None, f"{lines} lines", operation)])
    return item_ids[key]


def _not_yet_acknowledged(batch: pd.DataFrame, ledger: Ledger) -> pd.DataFrame:
    """Rows whose content the ERP has not acknowledged yet (all of them, unless this is a retry)."""
    acknowledged = ledger.snapshot_hashes(FLOW, batch[KEY_COLUMN].tolist())
    if not acknowledged:
        return batch
    done = batch[KEY_COLUMN].map(acknowledged) == batch[HASH_COLUMN]
    return batch[~done.fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)


def _add_figures(left: Figures, right: Figures) -> Figures:
    """Exact sum of two Figures (Decimal totals per currency and VAT rate)."""
    totals = {group: dict(amounts) for group, amounts in left.totals.items()}
    for group, amounts in right.totals.items():
        into = totals.setdefault(group, {})
        for column, amount in amounts.items():
            into[column] = into[column] + amount if column in into else amount
    return Figures(count=left.count + right.count, totals=totals)


def reconcile_and_report(meta: dict, billing: sa.Engine, erp: sa.Engine, ledger: Ledger) -> RunSummary:
    """Counts and totals per currency and VAT rate, billing against ERP, leaving out rows held back."""
    run_id = meta["run_id"]
    held = ledger.quarantined(flow=FLOW, run_id=run_id)
    held_keys = sorted({q["source_key"] for q in held})
    # Each side is summed by its own database: asked at once, the two servers work at the same time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile") as pool:
        billing_side = pool.submit(invoice_line_figures, billing, held_keys)
        target = erp_lines.target_figures(erp, held_keys)
        source = billing_side.result()
    differences = compare(FLOW, source, target, what="invoice lines")
    summary = RunSummary(
        flow=FLOW, run_id=run_id, entity="invoice_line", target="ERP billed_invoice_lines",
        sent=meta["created"] + meta["updated"], created=meta["created"], updated=meta["updated"],
        unchanged=meta["source_keys"] - meta["new"] - meta["changed"], deleted=meta["deleted"],
        quarantined=meta["quarantined"], rejected=0, totals=meta["sent_totals"], reconciliation=differences,
        reconciliation_detail=f"billing {source.count} lines, ERP {target.count} lines, "
                              f"totals equal in {len(source.totals)} currency/VAT group(s)",
        gate_report=meta.get("gate_report", ""),
        held_back=[{"key": q["source_key"], "status": "quarantined", "reasons": q["reasons"], "row": q["row"]}
                   for q in held])
    workbook = settings.reports_dir(FLOW, run_id) / "reconciliation.xlsx"
    summary.workbook = str(write_workbook(summary, workbook, source.as_rows(), target.as_rows()))
    ledger.finish_run(run_id, FLOW, "reconciled" if not differences else "failed", summary.as_dict())
    log.info("\n%s", summary.text())
    if differences:
        raise ReconciliationError(FLOW, differences)
    return summary


def run_all(run_id: str, billing: sa.Engine, erp: sa.Engine, ledger: Ledger, chunk_rows: int = 200_000) -> RunSummary:
    meta = extract(run_id, billing, ledger, chunk_rows)
    meta = gate(meta, ledger)
    meta = load(meta, erp, ledger)
    return reconcile_and_report(meta, billing, erp, ledger)


# The four Airflow tasks (ledgerlink.spine), each opening the connections it needs.
def task_extract(run_id: str) -> dict:
    from ledgerlink import tasks

    return extract(run_id, tasks.billing_engine(), tasks.ledger())


def task_gate(meta: dict) -> dict:
    from ledgerlink import tasks

    return gate(meta, tasks.ledger())


def task_load(meta: dict) -> dict:
    from ledgerlink import tasks

    return load(meta, tasks.erp_engine(), tasks.ledger())


def task_reconcile_and_report(meta: dict) -> dict:
    from ledgerlink import tasks

    return reconcile_and_report(meta, tasks.billing_engine(), tasks.erp_engine(), tasks.ledger()).as_dict()
