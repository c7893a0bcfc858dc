"""A flow of whole records to a target that takes one record at a time (1C's OData, a CRM's REST API).

What such a flow truly owns is two things: how to read its source, and the target adapter that maps a record to
the target's shape and writes it (:class:`RecordTarget`). Everything else is here, once: the extract with its
lease, the gate, change tracking against what the target acknowledged, the delivery lifecycle
(:class:`~ledgerlink.delivery.ItemDelivery`), reconciliation record by record with the map's conflict policy,
and closing the run (:func:`~ledgerlink.flows.closing.close_run`).

Conflict policies (the map's, checked by ``spec.declared`` against :data:`CONFLICT_POLICIES`): ``master_wins``
(what drifted in the target is sent again) and ``target_edits_held`` (the target keeps people's edits: a record
is written only over the version we last wrote, which the adapter reports through
:class:`~ledgerlink.delivery.Written` and gets back as ``written_version``; anything else is held back for
finance, with both values, never overwritten).

Built for the map's "reference data" volumes (a customer table: 100,000 records): the source is read whole each
run, so the gate sees every record and change tracking cannot miss an edit that did not move the watermark.

Records travel through as many sessions at once as the target connection offers (:class:`SessionSource`: 1C's
hook reads ``sessions`` from the connection, 4 by default), each session with its own adapter; an adapter whose
records reference each other orders them in waves (``RecordTarget.wave``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import pandas as pd

from ledgerlink.delivery import ItemDelivery, Written
from ledgerlink.flows import FlowSteps, task_steps
from ledgerlink.flows.closing import close_run, held_back_rows
from ledgerlink.flows.params import RunParams
from ledgerlink.flows.spec import FlowSpec
from ledgerlink.flows.staging import read_frame, read_json, stage_frame, stage_json
from ledgerlink.flows.state import Outcomes, RunState
from ledgerlink.flows.steps import blocked_on_gate_failure, gate_staged
from ledgerlink.ledger import CREATE, DELETE, SUPERSEDED, UPDATE, Ledger, PlannedChange
from ledgerlink.report import RunSummary
from ledgerlink.retrying import RetryBudget
from ledgerlink.tracking import HASH_COLUMN, KEY_COLUMN, diff, next_watermark, with_keys_and_hashes

log = logging.getLogger(__name__)
SHOWN = 10  # keys named in one difference line
MASTER_WINS, TARGET_EDITS_HELD = "master_wins", "target_edits_held"
CONFLICT_POLICIES = (MASTER_WINS, TARGET_EDITS_HELD)  # what a keyed flow can apply (``spec.declared``)


class RecordTarget(Protocol):
    """A flow's target adapter: the target's shape of a record, and the writes, one record at a time.

    ``upsert`` and ``mark_deleted`` return what they did: ``created``, ``updated``, ``deleted`` or ``unchanged``
    (the target held it so already), or a :class:`~ledgerlink.delivery.Written` with it, the version the target
    gave the record and the request. A refusal raises :class:`~ledgerlink.errors.RemoteRejected`, a record not
    to be written now :class:`~ledgerlink.errors.HeldBack`, a target that is down
    :class:`~ledgerlink.errors.TransientError`. Under the policy ``target_edits_held`` both get
    ``written_version=`` (the version of our last write, None if none is known).

    Optional: ``prepare(records)``, called once before the records are sent, with every record about to be
    written (to make sure what they point at exists, in the target's order), and ``reconcile(records,
    held_keys)`` returning ``(differences, source_totals, target_totals)``: checks across records (money totals)
    beside the record-by-record comparison."""

    system: str  # the target system as finance names it: "1C"
    name: str  # the target's collection, for the summary: "1C Catalog_Контрагенты"

    def target_key(self, source_key: str) -> str:
        """The record's key in the target, derived from the source key: the same on every run and machine."""

    def upsert(self, record: dict, *, believed_new: bool) -> str | Written: ...

    def mark_deleted(self, target_key: str) -> str | Written: ...

    def read_ours(self, target_keys: set[str]) -> dict[str, dict]:
        """The records the flow owns in the target and that are active there (not marked for deletion), by
        target key; ``target_keys`` are those the ledger knows."""

    def mismatches(self, record: dict, held: dict) -> dict[str, tuple[object, object]]:
        """The target's fields where ``held`` (what the target has) differs from ``record`` mapped: field ->
        (the target's value, the source's value)."""

    # Optional: ``wave(source_key, record) -> int``. Records of a lower wave are all acknowledged before a
    # higher wave starts (what a record references goes first: catalogs before documents); ``record`` is None
    # for a deletion, and deletions travel after every upsert, highest wave first. Without it: one wave.


@runtime_checkable
class SessionSource(Protocol):
    """A target connection that serves several sessions at once: ``sessions`` of them, each opened by
    ``open_session()`` as a connection of its own (the first session is the connection itself)."""

    sessions: int

    def open_session(self) -> object: ...


@contextlib.contextmanager
def target_sessions(connection) -> Iterator[list]:
    """The connection and, when it is a :class:`SessionSource`, the other sessions it allows, closed after."""
    count = max(1, int(connection.sessions)) if isinstance(connection, SessionSource) else 1
    opened = [connection.open_session() for _ in range(count - 1)]
    try:
        yield [connection, *opened]
    finally:
        for session in opened:
            close = getattr(session, "close", None)
            if close is not None:
                close()


def in_waves(changes: list[PlannedChange], target: RecordTarget, rows: dict[str, dict]) -> list[list[PlannedChange]]:
    """The changes in the order the target's references need (see ``RecordTarget.wave``), order kept within a
    wave: upserts by ascending wave, then deletions by descending wave."""
    wave = getattr(target, "wave", None)
    if wave is None:
        return [changes] if changes else []
    upserts: dict[int, list[PlannedChange]] = {}
    deletions: dict[int, list[PlannedChange]] = {}
    for change in changes:
        if change.operation == DELETE:
            deletions.setdefault(int(wave(change.source_key, None)), []).append(change)
        else:
            upserts.setdefault(int(wave(change.source_key, rows[change.source_key])), []).append(change)
    return [upserts[n] for n in sorted(upserts)] + [deletions[n] for n in sorted(deletions, reverse=True)]


@dataclasses.dataclass(frozen=True)
class KeyedFlow:
    """A flow of keyed records, declared by its spec, its source reader and its target adapter.

    ``read``: the source's records (every one; the spec's key and fields among the columns). ``target``: the
    adapter for a target connection. ``watermark``: the source column telling when a record last changed: a
    record changed after the extract is the next run's work, not a difference."""

    spec: FlowSpec
    read: Callable[[object], pd.DataFrame]
    target: Callable[[object], RecordTarget]
    watermark: str = "updated_at"
    customer_column: str = "customer_id"  # what a run for one customer filters on (trigger params)
    date_column: str | None = None  # what a date range filters on; None: the watermark column

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def key(self) -> str:
        (key,) = self.spec.key  # one key column: a composite key would need a composite target key
        return key

    # steps -----------------------------------------------------------------------------------------------------
    def extract(self, run_id: str, source, ledger: Ledger, params: RunParams = RunParams()) -> RunState:
        """Read every source record: the gate sees them all before change tracking picks what travels. A run for
        one customer or a date range (``params``) reads only those, and leaves the watermark where it was."""
        ledger.start_run(run_id, self.id)  # takes the flow's lease: a second run at once stops here
        rows = self._of_run(self.read(source), params)
        log.info("%s: %d %s record(s) read from %s%s", self.id, len(rows), self.spec.entity, self.spec.source,
                 f" ({params.describe()})" if params.partial or params.dry_run else "")
        return RunState(run_id=run_id, read=len(rows), source_keys=int(rows[self.key].nunique()),
                        batch=[stage_frame(self.id, run_id, "records", rows)], params=params.as_dict(),
                        watermark_read=None if params.partial else next_watermark(rows, self.watermark, None))

    def _of_run(self, records: pd.DataFrame, params: RunParams) -> pd.DataFrame:
        return params.keep(records, customer_column=self.customer_column,
                           date_column=self.date_column or self.watermark)

    def _snapshot(self, ledger: Ledger, params: RunParams, keys: set[str]) -> dict:
        """What the target acknowledged; for a partial run only the records it is about (the others are neither
        deleted nor compared)."""
        snapshot = ledger.snapshot(self.id)
        return {k: v for k, v in snapshot.items() if k in keys} if params.partial else snapshot

    def gate(self, state: RunState, ledger: Ledger) -> RunState:
        """Validate every record; blocking failures stop here with nothing sent. What passed is diffed against
        what the target acknowledged: only changes (and deletions) travel."""
        run_id = state.run_id
        source_keys = set(read_frame(state.batch[0])[self.key].dropna())  # held-back ones included
        with blocked_on_gate_failure(ledger, self.spec, run_id):
            state = gate_staged(state, ledger, self.spec, max_rows=self.spec.volume_total)
        batch = with_keys_and_hashes(read_frame(state.batch[0]), list(self.spec.key), self.spec.content_columns)
        # Only a key gone from the source is a deletion, not one held back.
        changes = diff(batch, self._snapshot(ledger, RunParams.of(state.params), source_keys), source_keys)
        to_send = changes.to_send
        to_send["_op"] = changes.operations(CREATE, UPDATE)
        log.info("%s: %d new, %d changed, %d deleted, %d unchanged, %d held back", self.id, len(changes.new),
                 len(changes.changed), len(changes.deleted), changes.unchanged, state.quarantined)
        return dataclasses.replace(state, **changes.counts(),
                                   batch=[stage_frame(self.id, run_id, "changes", to_send)],
                                   deletions=stage_json(self.id, run_id, "deletions", changes.target_keys))

    def load(self, state: RunState, connection, ledger: Ledger, retry: RetryBudget | None = None) -> RunState:
        """Send each change through the delivery lifecycle: every record planned, sent and acknowledged in the
        ledger; a transient failure retried per record (``retry``), the task failing only when the target stays
        down; refused credentials stopping the run at once, as one error. Records travel through as many
        sessions at once as the connection offers (:func:`target_sessions`), in the adapter's waves."""
        run_id = state.run_id
        ledger.hold_lease(self.id, run_id)
        rows = {row[KEY_COLUMN]: row for row in read_frame(state.batch[0]).to_dict("records")}
        deletions: dict[str, str | None] = read_json(state.deletions)
        with target_sessions(connection) as sessions:
            targets = [self.target(session) for session in sessions]
            target = targets[0]
            changes = [PlannedChange(key, target.target_key(key), row[HASH_COLUMN], row["_op"])
                       for key, row in rows.items()]
            changes += [PlannedChange(key, target_key or target.target_key(key), None, DELETE)
                        for key, target_key in deletions.items()]
            if RunParams.of(state.params).dry_run:
                planned = {op: sum(1 for c in changes if c.operation == op) for op in (CREATE, UPDATE, DELETE)}
                for change in changes[:SHOWN]:
                    log.info("dry run: would %s %s %s in %s", change.operation, self.spec.entity, change.source_key,
                             target.name)
                log.info("dry run: %d change(s) planned, none sent: %s", len(changes), planned)
                return dataclasses.replace(state, outcomes=Outcomes(created=planned[CREATE], updated=planned[UPDATE],
                                                                    deleted=planned[DELETE]))
            delivery = ItemDelivery(ledger, flow=self.id, run_id=run_id, target=self.spec.target,
                                    entity=self.spec.entity, retry=retry)
            to_send = delivery.open(changes)
            versions = self._written_versions(ledger, [c.source_key for c in to_send])
            if to_send and hasattr(target, "prepare"):
                # Each session's adapter prepares itself (what it learns is its own): the first creates what the
                # records point at, the others find it there.
                for session_target in targets:
                    session_target.prepare([rows[c.source_key] for c in to_send if c.operation != DELETE])
            if to_send:
                log.info("%s: sending %d change(s) through %d session(s)", self.id, len(to_send), len(targets))
            delivery.deliver_all(
                in_waves(to_send, target, rows), targets,
                lambda session_target, change: self._send(session_target, change, rows, versions)(),
                label=lambda change: "" if change.operation == DELETE else self._label(rows[change.source_key]))
        if state.watermark_read:
            ledger.set_watermark(self.id, self.watermark, state.watermark_read)
        log.info("Loaded into %s: %s", target.name, dict(delivery.outcomes))
        return dataclasses.replace(state, outcomes=Outcomes(**delivery.outcomes))

    def _written_versions(self, ledger: Ledger, keys: list[str]) -> dict[str, str] | None:
        """Under ``target_edits_held``: the version the target gave each record at our last write."""
        return ledger.target_versions(self.id, keys) if self.spec.conflict_policy == TARGET_EDITS_HELD else None

    @staticmethod
    def _send(target: RecordTarget, change: PlannedChange, rows: dict, versions: dict[str, str] | None):
        """The call that sends one change (with the version we last wrote, when the policy needs it)."""
        extra = {} if versions is None else {"written_version": versions.get(change.source_key)}
        if change.operation == DELETE:
            return functools.partial(target.mark_deleted, change.target_key, **extra)
        return functools.partial(target.upsert, rows[change.source_key],
                                 believed_new=change.operation == CREATE, **extra)

    def reconcile_and_report(self, state: RunState, source, connection, ledger: Ledger) -> RunSummary:
        """Compare the source with the target record by record, apply the map's conflict policy to what drifted,
        write the workbook and close the run; fail on any difference or refusal."""
        run_id, target = state.run_id, self.target(connection)
        ledger.hold_lease(self.id, run_id)
        params = RunParams.of(state.params)
        if params.dry_run:
            return self._close_dry_run(state, target, ledger)
        records = self._of_run(self.read(source), params)
        late = self._changed_after(records, state.watermark_read)
        snapshot = self._snapshot(ledger, params, set(records[self.key]))
        held = ledger.quarantined(flow=self.id, run_id=run_id)
        rejected = [i for i in ledger.items(flow=self.id, run_id=run_id)
                    if i["status"] == "rejected" and i["last_error"] != SUPERSEDED]
        held_keys = {q["source_key"] for q in held} | {i["source_key"] for i in rejected}
        source_keys = set(records[self.key])
        ours = {target.target_key(k) for k in set(snapshot) | source_keys}
        held_in_target = target.read_ours(ours)
        if params.partial:  # a run over part of the source compares that part only
            held_in_target = {k: v for k, v in held_in_target.items() if k in ours}

        differences, drifted, edited = [], [], []
        holding = self.spec.conflict_policy == TARGET_EDITS_HELD  # drift is a person's edit, held for finance
        missing = sorted(source_keys - set(snapshot) - held_keys - late)
        if missing:
            differences.append(f"{len(missing)} {self.spec.source} {self.spec.entity}(s) neither in {target.system} "
                               f"nor held back: {missing[:SHOWN]}")
        expected = {target.target_key(k): k for k in snapshot if k in source_keys}
        # A create the target took but did not keep whole was refused (held back): reported there, not here.
        held_refs = {target.target_key(k) for k in held_keys} - set(expected)
        if set(held_in_target) - held_refs != set(expected):
            extra = sorted(set(held_in_target) - set(expected) - held_refs)
            absent = sorted(expected[ref] for ref in set(expected) - set(held_in_target))
            drifted += absent
            edited += [(key, {"state": (f"missing or marked for deletion in {target.system}", "active")})
                       for key in absent]
            if extra or not holding:
                differences.append(f"{target.name}: {self.spec.source} (acknowledged) {len(expected)}, "
                                   f"{target.system} {len(held_in_target)}; in {target.system} only: "
                                   f"{extra[:SHOWN]}; missing or marked for deletion in {target.system}: "
                                   f"{absent[:SHOWN]}")
        for record in records.to_dict("records"):
            key = record[self.key]
            if key in held_keys or key in late or key not in snapshot:
                continue
            actual = held_in_target.get(target.target_key(key))
            if actual is None:
                continue
            mismatched = target.mismatches(record, actual)
            if mismatched:
                drifted.append(key)
                edited.append((key, mismatched))
                both = "; ".join(f"{name}: {target.system} {theirs!r}, {self.spec.source} {ours!r}"
                                 for name, (theirs, ours) in sorted(mismatched.items()))
                if not holding:
                    differences.append(f"{self.spec.entity} {key}: {target.system} differs in {sorted(mismatched)} "
                                       f"({both})")
        if drifted and holding:
            held = held + self._hold_target_edits(ledger, run_id, edited, target.system)
        elif drifted:
            differences.append(self._resolve_conflicts(ledger, sorted(drifted), target.system))
        source_totals, target_totals = [], []
        check_totals = getattr(target, "reconcile", None)
        if check_totals is not None:
            more, source_totals, target_totals = check_totals(
                [r for r in records.to_dict("records") if r[self.key] not in late],
                held_keys | {key for key, _ in edited})
            differences += more

        done = state.outcomes or Outcomes()
        summary = RunSummary(
            flow=self.id, run_id=run_id, entity=self.spec.entity, target=target.name,
            sent=done.created + done.updated, created=done.created, updated=done.updated,
            unchanged=state.unchanged, deleted=done.deleted, already_in_target=done.already_in_target,
            # The gate diffed only what passed: held-back records are changes of their own here.
            changes=state.changes + state.quarantined,
            quarantined=state.quarantined + done.held_back, rejected=done.rejected, reconciliation=differences,
            reconciliation_detail=f"{self.spec.source} {len(source_keys)} {self.spec.entity} record(s), "
                                  f"{len(held_keys | {k for k, _ in edited})} held back; {target.name} "
                                  f"{len(held_in_target)} active",
            gate_report=state.gate_report, held_back=held_back_rows(held, rejected),
            source=self.spec.source, target_system=target.system,
            source_count=len(source_keys - held_keys), target_count=len(held_in_target),
            source_totals=source_totals, target_totals=target_totals)
        return close_run(ledger, summary, rejected=rejected, source_totals=source_totals,
                         target_totals=target_totals)

    def _hold_target_edits(self, ledger: Ledger, run_id: str, edited: list[tuple[str, dict]],
                           system: str) -> list[dict]:
        """``target_edits_held``: records edited in the target (found differing at reconciliation) are held back
        for finance with both values; the ledger keeps what was acknowledged, so nothing is re-sent over them."""
        rows = [(key, [f"edited in {system} since Ledgerlink wrote it; {self.spec.master} (master) and {system} "
                       f"differ in {sorted(fields)}: held back, not overwritten"],
                 {name: {system: str(theirs), self.spec.master: str(ours)} for name, (theirs, ours) in fields.items()})
                for key, fields in edited]
        ledger.quarantine(run_id, self.id, self.spec.entity, rows)
        log.warning("%s: %d %s(s) edited in %s, held back for finance: %s", self.id, len(rows), self.spec.entity,
                    system, [key for key, _ in edited][:SHOWN])
        return [{"source_key": key, "reasons": "; ".join(reasons), "row": json.dumps(row, ensure_ascii=False)}
                for key, reasons, row in rows]

    def _label(self, record: dict) -> str:
        """A record's name for people, beside its key in errors: its legal name or name."""
        for column in ("legal_name", "name", "title"):
            if record.get(column):
                return str(record[column])
        return ""

    def _close_dry_run(self, state: RunState, target: RecordTarget, ledger: Ledger) -> RunSummary:
        """A dry run's summary: what would have been sent; nothing was, so there is nothing to reconcile."""
        done = state.outcomes or Outcomes()
        held = ledger.quarantined(flow=self.id, run_id=state.run_id)
        summary = RunSummary(
            flow=self.id, run_id=state.run_id, entity=self.spec.entity, target=target.name,
            sent=done.created + done.updated, created=done.created, updated=done.updated, unchanged=state.unchanged,
            deleted=done.deleted, changes=state.changes + state.quarantined, quarantined=state.quarantined,
            reconciliation_detail="not compared: a dry run sends nothing",
            gate_report=state.gate_report, held_back=held_back_rows(held), source=self.spec.source,
            target_system=target.system, dry_run=True)
        return close_run(ledger, summary)

    def _changed_after(self, records: pd.DataFrame, watermark_read: str | None) -> set[str]:
        """Records changed in the source after this run read it: the next run's work, not a difference."""
        if not watermark_read or records.empty or self.watermark not in records:
            return set()
        changed = pd.to_datetime(records[self.watermark], utc=True, format="ISO8601") > \
            pd.Timestamp(watermark_read).tz_convert("UTC")
        return set(records.loc[changed.to_numpy(dtype=bool), self.key])

    def _resolve_conflicts(self, ledger: Ledger, drifted: list[str], system: str) -> str:
        """Master wins: for records the target no longer holds as the source has them, the ledger forgets what
        the target acknowledged, so the next run sends them again and puts the master's values back."""
        if self.spec.conflict_policy != MASTER_WINS:  # refused by spec.declared; a guard against a new policy
            raise NotImplementedError(f"conflict policy {self.spec.conflict_policy!r}")
        ledger.forget(self.id, drifted)
        return (f"{self.spec.master} is the master: the next run re-sends {len(drifted)} {self.spec.entity}(s) to "
                f"{system}: {drifted[:SHOWN]}")

    # wiring ----------------------------------------------------------------------------------------------------
    def run_all(self, run_id: str, source, connection, ledger: Ledger) -> RunSummary:
        """The whole flow in one call (the CLI and tests; the DAG runs the same steps as tasks)."""
        state = self.extract(run_id, source, ledger)
        state = self.gate(state, ledger)
        state = self.load(state, connection, ledger)
        return self.reconcile_and_report(state, source, connection, ledger)

    def count_in_target(self, connect: Callable[[], object]) -> Callable[[dict], tuple[int, str]]:
        """For ``ledgerlink summary --check-targets``: how many of the records the ledger knows the target
        holds active now (``connect`` opens the target's connection when asked)."""

        def count(snapshot: dict) -> tuple[int, str]:
            known = {target_key for _, target_key in snapshot.values() if target_key}
            target = self.target(connect())
            return len(target.read_ours(known)), f"{target.system} holds"

        return count

    def steps(self, *, source: Callable[[], object], target: Callable[[], object]) -> FlowSteps:
        """The four Airflow tasks, each opening the connections it needs (``source``, ``target``)."""
        return task_steps(extract=self.extract, gate=self.gate, load=self.load,
                          reconcile_and_report=self.reconcile_and_report, source=source, target=target,
                          count_in_target=self.count_in_target(target))
