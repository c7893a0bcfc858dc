"""A flow of whole records to a target that takes one record at a time (1C's OData, a CRM's REST API).

What such a flow truly owns is two things: how to read its source, and the target adapter that maps a record to
the target's shape and writes it (:class:`RecordTarget`). Everything else is here, once: the extract with its
lease, the gate, change tracking against what the target acknowledged, the delivery lifecycle
(:class:`~ledgerlink.delivery.ItemDelivery`), reconciliation record by record with the map's conflict policy,
and closing the run (:func:`~ledgerlink.flows.closing.close_run`).

Built for the map's "reference data" volumes (a customer table: 100,000 records): the source is read whole each
run, so the gate sees every record and change tracking cannot miss an edit that did not move the watermark.

Records travel through as many sessions at once as the target connection offers (:class:`SessionSource`: 1C's
hook reads ``sessions`` from the connection, 4 by default), each session with its own adapter; an adapter whose
records reference each other orders them in waves (``RecordTarget.wave``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import pandas as pd

from ledgerlink.delivery import ItemDelivery
from ledgerlink.flows import FlowSteps, task_steps
from ledgerlink.flows.closing import close_run, held_back_rows
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


class RecordTarget(Protocol):
    """A flow's target adapter: the target's shape of a record, and the writes, one record at a time.

    ``upsert`` and ``mark_deleted`` return what they did: ``created``, ``updated``, ``deleted`` or ``unchanged``
    (the target held it so already). A refusal raises :class:`~ledgerlink.errors.RemoteRejected`, a target that
    is down :class:`~ledgerlink.errors.TransientError`."""

    system: str  # the target system as finance names it: "1C"
    name: str  # the target's collection, for the summary: "1C Catalog_Контрагенты"

    def target_key(self, source_key: str) -> str:
        """The record's key in the target, derived from the source key: the same on every run and machine."""

    def upsert(self, record: dict, *, believed_new: bool) -> str: ...

    def mark_deleted(self, target_key: str) -> str: ...

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

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def key(self) -> str:
        (key,) = self.spec.key  # one key column: a composite key would need a composite target key
        return key

    # steps -----------------------------------------------------------------------------------------------------
    def extract(self, run_id: str, source, ledger: Ledger) -> RunState:
        """Read every source record: the gate sees them all before change tracking picks what travels."""
        ledger.start_run(run_id, self.id)  # takes the flow's lease: a second run at once stops here
        rows = self.read(source)
        log.info("%s: %d %s record(s) read from %s", self.id, len(rows), self.spec.entity, self.spec.source)
        return RunState(run_id=run_id, read=len(rows), source_keys=int(rows[self.key].nunique()),
                        batch=[stage_frame(self.id, run_id, "records", rows)],
                        watermark_read=next_watermark(rows, self.watermark, None))

    def gate(self, state: RunState, ledger: Ledger) -> RunState:
        """Validate every record; blocking failures stop here with nothing sent. What passed is diffed against
        what the target acknowledged: only changes (and deletions) travel."""
        run_id = state.run_id
        source_keys = set(read_frame(state.batch[0])[self.key].dropna())  # held-back ones included
        with blocked_on_gate_failure(ledger, self.spec, run_id):
            state = gate_staged(state, ledger, self.spec, max_rows=self.spec.volume_total)
        batch = with_keys_and_hashes(read_frame(state.batch[0]), list(self.spec.key), self.spec.content_columns)
        # Only a key gone from the source is a deletion, not one held back.
        changes = diff(batch, ledger.snapshot(self.id), source_keys)
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
            delivery = ItemDelivery(ledger, flow=self.id, run_id=run_id, target=self.spec.target,
                                    entity=self.spec.entity, retry=retry)
            to_send = delivery.open(changes)
            if to_send:
                log.info("%s: sending %d change(s) through %d session(s)", self.id, len(to_send), len(targets))

            def send(session_target: RecordTarget, change: PlannedChange) -> str:
                if change.operation == DELETE:
                    return session_target.mark_deleted(change.target_key)
                return session_target.upsert(rows[change.source_key], believed_new=change.operation == CREATE)

            delivery.deliver_all(in_waves(to_send, target, rows), targets, send)
        if state.watermark_read:
            ledger.set_watermark(self.id, self.watermark, state.watermark_read)
        log.info("Loaded into %s: %s", target.name, dict(delivery.outcomes))
        return dataclasses.replace(state, outcomes=Outcomes(**delivery.outcomes))

    def reconcile_and_report(self, state: RunState, source, connection, ledger: Ledger) -> RunSummary:
        """Compare the source with the target record by record, apply the map's conflict policy to what drifted,
        write the workbook and close the run; fail on any difference or refusal."""
        run_id, target = state.run_id, self.target(connection)
        ledger.hold_lease(self.id, run_id)
        records = self.read(source)
        late = self._changed_after(records, state.watermark_read)
        snapshot = ledger.snapshot(self.id)
        held = ledger.quarantined(flow=self.id, run_id=run_id)
        rejected = [i for i in ledger.items(flow=self.id, run_id=run_id)
                    if i["status"] == "rejected" and i["last_error"] != SUPERSEDED]
        held_keys = {q["source_key"] for q in held} | {i["source_key"] for i in rejected}
        source_keys = set(records[self.key])
        held_in_target = target.read_ours({target.target_key(k) for k in set(snapshot) | source_keys})

        differences, drifted = [], []
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
            differences.append(f"{target.name}: {self.spec.source} (acknowledged) {len(expected)}, "
                               f"{target.system} {len(held_in_target)}; in {target.system} only: {extra[:SHOWN]}; "
                               f"missing or marked for deletion in {target.system}: {absent[:SHOWN]}")
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
                both = "; ".join(f"{name}: {target.system} {theirs!r}, {self.spec.source} {ours!r}"
                                 for name, (theirs, ours) in sorted(mismatched.items()))
                differences.append(f"{self.spec.entity} {key}: {target.system} differs in {sorted(mismatched)} "
                                   f"({both})")
        if drifted:
            differences.append(self._resolve_conflicts(ledger, sorted(drifted), target.system))

        done = state.outcomes or Outcomes()
        summary = RunSummary(
            flow=self.id, run_id=run_id, entity=self.spec.entity, target=target.name,
            sent=done.created + done.updated, created=done.created, updated=done.updated,
            unchanged=state.unchanged, deleted=done.deleted, already_in_target=done.already_in_target,
            # The gate diffed only what passed: held-back records are changes of their own here.
            changes=state.changes + state.quarantined,
            quarantined=state.quarantined, rejected=done.rejected, reconciliation=differences,
            reconciliation_detail=f"{self.spec.source} {len(source_keys)} {self.spec.entity} record(s), "
                                  f"{len(held_keys)} held back; {target.name} {len(held_in_target)} active",
            gate_report=state.gate_report, held_back=held_back_rows(held, rejected))
        return close_run(ledger, summary, rejected=rejected)

    def _changed_after(self, records: pd.DataFrame, watermark_read: str | None) -> set[str]:
        """Records changed in the source after this run read it: the next run's work, not a difference."""
        if not watermark_read or records.empty or self.watermark not in records:
            return set()
        changed = pd.to_datetime(records[self.watermark], utc=True, format="ISO8601") > \
            pd.Timestamp(watermark_read).tz_convert("UTC")
        return set(records.loc[changed.to_numpy(dtype=bool), self.key])

    def _resolve_conflicts(self, ledger: Ledger, drifted: list[str], system: str) -> str:
        """The map's conflict policy for records the target no longer holds as the source has them. Master wins
        (the only policy ``spec.declared`` lets a keyed flow declare today): the ledger forgets what the target
        acknowledged for them, so the next run sends them again and puts the master's values back."""
        if self.spec.conflict_policy != "master_wins":  # refused by spec.declared; a guard against a new policy
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
