"""A flow fed by a source's change feed (1C's exchange-plan change selection, a watermark read), applied to a target
that decides per record what a change means (billing matching a bank receipt to an invoice).

:class:`~ledgerlink.flows.keyed.KeyedFlow` reads its source whole and diffs it; a change feed gives only what
changed since the last position the flow *acknowledged*, deletions named, and keeps giving it until told. So the
lifecycle differs in one place that matters: **the source is acknowledged last**, after the target durably holds
every change and the reconciliation agrees. A run that dies anywhere before reads the same changes again, and
applies nothing twice: what the target acknowledged is in the ledger's snapshot by content hash (skipped), what it
holds already is the target's own ``unchanged``, and what was held for finance is remembered by hash too (not
held twice).

What a flow owns is its spec, its feed (:class:`ChangeFeed`) and its target adapter (:class:`FeedTarget`); the
steps are the spine's four: extract (read the feed), gate (the map's suite; then drop what was acknowledged
already), load (the target's decisions: applied through :class:`~ledgerlink.delivery.ItemDelivery`, held for
finance in the quarantine, or passed over with a reason), reconcile and report (the target checked for what was
applied, money received = applied + held back per currency, then the feed acknowledged, then
:func:`~ledgerlink.flows.closing.close_run`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ledgerlink.delivery import ItemDelivery
from ledgerlink.errors import ConfigurationError
from ledgerlink.flows import FlowSteps, task_steps
from ledgerlink.flows.closing import close_run, held_back_rows
from ledgerlink.flows.params import RunParams
from ledgerlink.flows.spec import FlowSpec
from ledgerlink.flows.staging import read_frame, read_json, stage_frame, stage_json
from ledgerlink.flows.state import Outcomes, RunState
from ledgerlink.flows.steps import blocked_on_gate_failure, gate_staged
from ledgerlink.ledger import CREATE, UPDATE, Ledger, PlannedChange
from ledgerlink.report import RunSummary
from ledgerlink.retrying import RetryBudget
from ledgerlink.tracking import HASH_COLUMN, KEY_COLUMN, with_keys_and_hashes

log = logging.getLogger(__name__)
APPLY, HOLD, PASS = "apply", "hold", "pass"
GONE_HASH = "deleted"  # what the held-for-finance memory keeps for a deletion it showed
SHOWN = 10


class ChangeFeed(Protocol):
    """A source's changes since a position. ``read(after)`` returns an object with ``records`` (a DataFrame with
    the spec's key and fields), ``deleted`` (keys gone at the source), ``position`` (what to acknowledge) and
    ``ignored`` (changes of other kinds that came along); ``acknowledge(position)`` tells the source they are
    applied. ``position_name`` names the ledger watermark that keeps the last acknowledged position."""

    name: str
    position_name: str

    def read(self, after: str | None): ...

    def acknowledge(self, position: str) -> None: ...


@dataclasses.dataclass
class Decision:
    """What the target makes of one change: ``apply`` it (``send`` writes it and returns created / updated /
    unchanged), ``hold`` it for finance (``reasons``, ``row`` shown), or ``pass`` it over (``reasons``: why
    there is nothing to write). ``kind`` is counted in the summary (matched, partial, ...); ``money`` is what the
    change carries, ``(currency, minor units)``, for money received = applied + held back."""

    key: str
    action: str
    kind: str
    reasons: list[str] = dataclasses.field(default_factory=list)
    row: dict = dataclasses.field(default_factory=dict)
    money: tuple[str, int] | None = None
    send: Callable[[], str] | None = None
    target_key: str | None = None


class FeedTarget(Protocol):
    system: str
    name: str

    def decide(self, records: list[dict], deleted: list[str]) -> list[Decision]:
        """One decision per record and per deleted key, in the order they are to be applied."""

    def holds(self, keys: list[str]) -> dict[str, tuple[str, int]]:
        """What the target holds under these keys now: key -> (currency, minor units)."""


@dataclasses.dataclass(frozen=True)
class ChangeFeedFlow:
    """A flow declared by its spec, its feed (``feed(connection)``) and its target adapter (``target(connection)``)."""

    spec: FlowSpec
    feed: Callable[[object], ChangeFeed]
    target: Callable[[object], FeedTarget]
    # The money a source record carries, (currency, minor units), or None (unreadable, or none): for the rows the
    # gate holds back, so that money received = applied + held back counts them too.
    money_of: Callable[[dict], tuple[str, int] | None] | None = None
    date_column: str | None = None  # what a run over a date range (trigger params) filters on

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def held_memory(self) -> str:
        """The ledger snapshot remembering, by content hash, the changes held for finance (not held twice)."""
        return f"{self.id}:held"

    # steps -----------------------------------------------------------------------------------------------------
    def extract(self, run_id: str, source, ledger: Ledger, params: RunParams = RunParams()) -> RunState:
        """Read what the source registered since the last acknowledged position. A run over part of it (a date
        range: ``date_column``) or a dry run reads the same, keeps its part, and never acknowledges: the source
        keeps every change registered for the next full run, which recognises what this one applied."""
        if params.customer:
            raise ConfigurationError(f"{self.id}: a run for one customer is not offered: {self.spec.source}'s "
                                     f"changes name its own records, not billing's customers; use a date range "
                                     f"or a dry run")
        ledger.start_run(run_id, self.id)
        feed = self.feed(source)
        after = ledger.watermark(self.id, feed.position_name)
        batch = feed.read(after)
        records = params.keep(batch.records, customer_column=None, date_column=self.date_column)
        deleted = [] if params.partial else list(batch.deleted)  # a run over part of the feed deletes nothing
        if params.partial or params.dry_run:
            log.info("%s: %s: %d of %d change(s) kept; nothing will be acknowledged", self.id, params.describe(),
                     len(records), len(batch.records))
        log.info("%s: %d %s change(s) and %d deletion(s) from %s since %s (%d other change(s) ignored)", self.id,
                 len(records), self.spec.entity, len(deleted), feed.name, after or "the start", batch.ignored)
        return RunState(run_id=run_id, read=len(records), source_keys=len(records), deleted=len(deleted),
                        batch=[stage_frame(self.id, run_id, "records", records)],
                        deletions=stage_json(self.id, run_id, "deletions", sorted(deleted)),
                        watermark_read=batch.position, params=params.as_dict())

    def gate(self, state: RunState, ledger: Ledger) -> RunState:
        """The map's suite over every change; then what the target acknowledged, or finance was shown, with the
        same content is dropped (a replay of a feed that was not acknowledged)."""
        with blocked_on_gate_failure(ledger, self.spec, state.run_id):
            # Bounded by the entity's total, not a run's volume: a feed never acknowledged grows (a first
            # connection to a base with a year of registered changes), and a gate that blocked it would never let
            # it shrink.
            state = gate_staged(state, ledger, self.spec, max_rows=self.spec.volume_total)
        batch = with_keys_and_hashes(read_frame(state.batch[0]), list(self.spec.key), self.spec.content_columns)
        keys = batch[KEY_COLUMN].tolist()
        done = ledger.snapshot_hashes(self.id, keys)
        shown = ledger.snapshot_hashes(self.held_memory, keys)
        seen = [done.get(k) == h or shown.get(k) == h for k, h in zip(keys, batch[HASH_COLUMN])]
        fresh = batch[~np.array(seen, dtype=bool)].reset_index(drop=True)
        fresh["_op"] = [UPDATE if k in done else CREATE for k in fresh[KEY_COLUMN]]
        unchanged = sum(seen)
        log.info("%s: %d change(s) to decide, %d seen before with the same content, %d held back by the gate",
                 self.id, len(fresh), unchanged, state.quarantined)
        return dataclasses.replace(state, new=int((fresh["_op"] == CREATE).sum()),
                                   changed=int((fresh["_op"] == UPDATE).sum()), unchanged=unchanged,
                                   batch=[stage_frame(self.id, state.run_id, "changes", fresh)])

    def load(self, state: RunState, connection, ledger: Ledger, retry: RetryBudget | None = None) -> RunState:
        """The target's decisions: each applied change through the delivery lifecycle, each held one into the
        quarantine (once per run, and remembered by hash), each passed one logged with its reason."""
        run_id, target = state.run_id, self.target(connection)
        ledger.hold_lease(self.id, run_id)
        frame = read_frame(state.batch[0])
        records = frame.to_dict("records")
        hashes = dict(zip(frame[KEY_COLUMN], frame[HASH_COLUMN])) if len(frame) else {}
        operations = dict(zip(frame[KEY_COLUMN], frame["_op"])) if len(frame) else {}
        deleted = read_json(state.deletions)
        # A deletion held for finance before (the feed was not acknowledged since) is not held again.
        shown_gone = ledger.snapshot_hashes(self.held_memory, deleted)
        deleted = [k for k in deleted if shown_gone.get(k) != GONE_HASH]
        decisions = target.decide(records, deleted)
        kinds = Counter(d.kind for d in decisions)
        if RunParams.of(state.params).dry_run:  # decided, shown, and nothing written or held
            for decision in decisions[:SHOWN]:
                log.info("dry run: would %s %s %s (%s): %s", decision.action, self.spec.entity, decision.key,
                         decision.kind, "; ".join(decision.reasons))
            log.info("dry run: %d decision(s), none carried out: %s", len(decisions), dict(kinds))
            return dataclasses.replace(state, outcomes=Outcomes(created=sum(d.action == APPLY for d in decisions)),
                                       sent_totals=_money_rows(decisions, []),
                                       documents=stage_json(self.id, run_id, "decisions", [
                                           {"key": d.key, "action": d.action, "kind": d.kind,
                                            "money": list(d.money) if d.money else None} for d in decisions]))

        held = [d for d in decisions if d.action == HOLD]
        decided = {d.key for d in decisions}
        gate_held_money = self._gate_held_money(ledger, run_id, decided)
        already = {q["source_key"] for q in ledger.quarantined(flow=self.id, run_id=run_id)}
        ledger.quarantine(run_id, self.id, self.spec.entity,
                          [(d.key, d.reasons, d.row) for d in held if d.key not in already])
        ledger.put_snapshot(self.held_memory, [d.key for d in held],
                            [hashes.get(d.key, GONE_HASH) for d in held])
        for decision in (d for d in decisions if d.action == PASS):
            log.info("%s %s: nothing to write in %s: %s", self.spec.entity, decision.key, target.system,
                     "; ".join(decision.reasons))

        to_apply = {d.key: d for d in decisions if d.action == APPLY}
        changes = [PlannedChange(key, d.target_key or key, hashes.get(key), operations.get(key, CREATE))
                   for key, d in to_apply.items()]
        # A numbered position (1C's MessageNo) is recorded on each item: the history says which message it came in.
        position = state.watermark_read or ""
        delivery = ItemDelivery(ledger, flow=self.id, run_id=run_id, target=self.spec.target,
                                entity=self.spec.entity, retry=retry,
                                message_no=int(position) if position.isdigit() else None)
        for change in delivery.open(changes):
            delivery.deliver(change, to_apply[change.source_key].send)
        log.info("Applied to %s: %s; decided: %s", target.name, dict(delivery.outcomes), dict(kinds))
        money = _money_rows(decisions, gate_held_money)
        return dataclasses.replace(state, outcomes=Outcomes(**delivery.outcomes), sent_totals=money,
                                   documents=stage_json(self.id, run_id, "decisions", [
                                       {"key": d.key, "action": d.action, "kind": d.kind,
                                        "money": list(d.money) if d.money else None} for d in decisions]))

    def reconcile_and_report(self, state: RunState, source, connection, ledger: Ledger) -> RunSummary:
        """The target checked for every change applied (held under its key, with its money), money received =
        applied + held back per currency; only then is the feed acknowledged, so a difference leaves the changes
        registered at the source for the next run."""
        run_id, target = state.run_id, self.target(connection)
        ledger.hold_lease(self.id, run_id)
        decisions = read_json(state.documents) if state.documents else []
        params = RunParams.of(state.params)
        if params.dry_run:
            return self._close_dry_run(state, decisions, target, ledger)
        applied = {d["key"]: tuple(d["money"]) for d in decisions if d["action"] == APPLY and d["money"]}
        in_target = target.holds(sorted(applied))
        differences = []
        missing = sorted(set(applied) - set(in_target))
        if missing:
            differences.append(f"{len(missing)} {self.spec.entity}(s) applied but not in {target.name}: "
                               f"{missing[:SHOWN]}")
        differing = sorted(k for k in set(applied) & set(in_target) if tuple(in_target[k]) != applied[k])
        if differing:
            differences.append(f"{len(differing)} {self.spec.entity}(s) held by {target.name} with other money than "
                               f"the source's: " + "; ".join(f"{k}: {target.system} {in_target[k]}, source "
                                                            f"{applied[k]}" for k in differing[:SHOWN]))
        held = ledger.quarantined(flow=self.id, run_id=run_id)
        rejected = [i for i in ledger.items(flow=self.id, run_id=run_id) if i["status"] == "rejected"
                    and i["last_error"] != "superseded"]
        kinds = Counter(d["kind"] for d in decisions)
        passed = sum(d["action"] == PASS for d in decisions)
        gate_held = len(held) - sum(d["action"] == HOLD for d in decisions)
        done = state.outcomes or Outcomes()
        notes = [f"decided: {', '.join(f'{kind} {n}' for kind, n in sorted(kinds.items())) or 'nothing'}"
                 + (f"; held back by the gate: {gate_held}" if gate_held else "")
                 + (f"; passed over (nothing to write): {passed}" if passed else "")]
        notes += [f"money {row['currency']}: received {row['received']} = applied {row['applied']} + held back "
                  f"{row['held']}" for row in state.sent_totals]
        if held:
            notes.append(f"held back for finance, with their reasons and candidates: `ledgerlink quarantine --flow "
                         f"{self.id}` and the workbook's 'Held back' sheet")
        if params.partial:
            notes.append(f"a run over part of the feed ({params.describe()}): NOT acknowledged to the source; the "
                         f"next full run reads every change again and recognises what this one applied")
        elif not differences and not rejected:
            feed = self.feed(source)
            if state.watermark_read:
                feed.acknowledge(state.watermark_read)
                ledger.set_watermark(self.id, feed.position_name, state.watermark_read)
            notes.append(f"acknowledged to {feed.name}: {feed.position_name} {state.watermark_read or '-'}")
        else:
            notes.append("NOT acknowledged to the source: its changes stay registered for the next run")
        summary = RunSummary(
            flow=self.id, run_id=run_id, entity=self.spec.entity, target=target.name,
            sent=done.created + done.updated, created=done.created, updated=done.updated,
            unchanged=state.unchanged, deleted=done.deleted, already_in_target=done.already_in_target,
            changes=len(decisions) - passed + gate_held, quarantined=len(held), rejected=done.rejected,
            reconciliation=differences,
            reconciliation_detail=f"{len(applied)} applied, all held by {target.name} with their money; "
                                  f"{len(held)} held back for finance",
            gate_report=state.gate_report, held_back=held_back_rows(held, rejected), notes=notes)
        return close_run(ledger, summary, rejected=rejected)

    def _close_dry_run(self, state: RunState, decisions: list[dict], target, ledger: Ledger) -> RunSummary:
        """A dry run's summary: the decisions the target would carry out; nothing was written or acknowledged."""
        kinds = Counter(d["kind"] for d in decisions)
        done = state.outcomes or Outcomes()
        notes = [f"would decide: {', '.join(f'{kind} {n}' for kind, n in sorted(kinds.items())) or 'nothing'}"]
        notes += [f"money {row['currency']}: received {row['received']} = would apply {row['applied']} + would "
                  f"hold back {row['held']}" for row in state.sent_totals]
        notes.append("dry run: nothing applied, nothing held, nothing acknowledged to the source")
        summary = RunSummary(
            flow=self.id, run_id=state.run_id, entity=self.spec.entity, target=target.name,
            sent=done.created, created=done.created, changes=len(decisions), unchanged=state.unchanged,
            quarantined=state.quarantined, reconciliation_detail="not compared: a dry run writes nothing",
            gate_report=state.gate_report, held_back=held_back_rows(ledger.quarantined(flow=self.id,
                                                                                       run_id=state.run_id)),
            notes=notes, dry_run=True)
        return close_run(ledger, summary)

    def _gate_held_money(self, ledger: Ledger, run_id: str, decided: set[str]) -> list[tuple[str, int]]:
        """The money of the rows the gate held back this run (not ``decided`` by the target), where readable."""
        if self.money_of is None:
            return []
        money = []
        for row in ledger.quarantined(flow=self.id, run_id=run_id):
            if row["source_key"] in decided:
                continue
            data = json.loads(row["row"]) if isinstance(row["row"], str) else row["row"]
            found = self.money_of(data)
            if found is not None:
                money.append(found)
        return money

    # wiring ----------------------------------------------------------------------------------------------------
    def run_all(self, run_id: str, source, connection, ledger: Ledger) -> RunSummary:
        state = self.extract(run_id, source, ledger)
        state = self.gate(state, ledger)
        state = self.load(state, connection, ledger)
        return self.reconcile_and_report(state, source, connection, ledger)

    def count_in_target(self, connect: Callable[[], object]) -> Callable[[dict], tuple[int, str]]:
        def count(snapshot: dict) -> tuple[int, str]:
            target = self.target(connect())
            return len(target.holds(sorted(snapshot))), f"{target.name} holds"

        return count

    def steps(self, *, source: Callable[[], object], target: Callable[[], object]) -> FlowSteps:
        return task_steps(extract=self.extract, gate=self.gate, load=self.load,
                          reconcile_and_report=self.reconcile_and_report, source=source, target=target,
                          count_in_target=self.count_in_target(target))


def _money_rows(decisions: list[Decision], gate_held: list[tuple[str, int]]) -> list[dict[str, str]]:
    """Per currency, as exact text: received (every change carrying money) = applied + held back."""
    sums: dict[str, Counter] = {}
    for decision in decisions:
        if decision.money is None or decision.action == PASS:
            continue
        currency, minor = decision.money
        sums.setdefault(currency, Counter())["applied" if decision.action == APPLY else "held"] += minor
    for currency, minor in gate_held:
        sums.setdefault(currency, Counter())["held"] += minor
    return [{"currency": currency, "received": _text(c["applied"] + c["held"]), "applied": _text(c["applied"]),
             "held": _text(c["held"])} for currency, c in sorted(sums.items())]


def _text(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"

