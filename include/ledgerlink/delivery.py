"""The delivery lifecycle every flow's load goes through, in one place: planned → sent → acknowledged or
rejected, per item (keyed HTTP targets, the ledger's ``items``) or per chunk of lines (transactional SQL
targets, the ledger's ``chunks``).

The order is enforced here, not by a docstring: a flow hands over its changes and a function that sends one
item (or writes one chunk) and gets the outcomes back. What an earlier attempt of the same run got
acknowledged is counted and never sent again; an item left open by an earlier attempt is continued, not
doubled; a transient failure is retried item by item (``RetryBudget``), and the task fails only when the target
stays down; refused credentials stop the run as one error.

A target that serves several sessions at once (a 1C server runs several working processes) takes items through
a pool of sessions (:meth:`ItemDelivery.deliver_all`), in waves when some items reference others.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar
from dataclasses import dataclass

import pandas as pd

from ledgerlink.errors import AuthenticationFailed, HeldBack, RemoteRejected, TransientError
from ledgerlink.ledger import CREATE, DELETE, UPDATE, UPSERT, Ledger, PlannedChange
from ledgerlink.loads.http import UNCHANGED  # what a send returns when the target held the content already
from ledgerlink.retrying import RetryBudget
from ledgerlink.tracking import HASH_COLUMN, KEY_COLUMN

log = logging.getLogger(__name__)
OUTCOME = {CREATE: "created", UPDATE: "updated", DELETE: "deleted"}
Session = TypeVar("Session")
# Acknowledgements are written in batches: one ledger transaction per ACK_BATCH answers, or every ACK_SECONDS.
# An answer not yet written when the process dies leaves its item sent: the next attempt finds the target
# holding it and counts it as what it did (the lost-answer path), so batching costs a re-check, never a loss.
ACK_BATCH = 200
ACK_SECONDS = 0.5


@dataclass(frozen=True)
class Written:
    """What a send may return instead of a bare outcome: the outcome, the version the target gave the record
    (1C's DataVersion; kept on the item for the conflict policy ``target_edits_held``) and the request that
    carried it (for ``ledgerlink history``)."""

    outcome: str
    version: str | None = None
    request: str | None = None


class ItemDelivery:
    """One item at a time, to a target that answers per item (1C's OData, a REST API).

    ``outcomes`` ends with each change counted once as created / updated / deleted / already_in_target /
    held_back / rejected (rows the gate held back never reach here: the gate counts them; ``held_back`` are those
    the target adapter held back at the door, :class:`~ledgerlink.errors.HeldBack`, quarantined here)."""

    def __init__(self, ledger: Ledger, *, flow: str, run_id: str, target: str, entity: str,
                 retry: RetryBudget | None = None, message_no: int | None = None):
        self.ledger, self.flow, self.run_id, self.target, self.entity = ledger, flow, run_id, target, entity
        self.retry = retry or RetryBudget()
        self.message_no = message_no  # the source's message the items came in (1C's exchange-plan MessageNo)
        self.outcomes: Counter = Counter({"created": 0, "updated": 0, "deleted": 0, "already_in_target": 0,
                                          "held_back": 0, "rejected": 0})
        self._item_ids: dict[str, int] = {}
        self._sent_earlier: set[int] = set()
        # The ledger is written by one thread at a time: the pool's threads write only when they retry.
        self._ledger_lock = threading.Lock()

    def open(self, changes: Sequence[PlannedChange]) -> list[PlannedChange]:
        """Plan this run's changes and return those still to send, in order.

        Open items of earlier runs that no longer need sending are closed as superseded; a change an earlier
        attempt of this run got acknowledged is counted as what it did and not sent again."""
        self.ledger.close_superseded(self.flow, {c.source_key for c in changes})
        acknowledged = self.ledger.snapshot_hashes(self.flow, [c.source_key for c in changes])
        to_send = []
        for change in changes:
            done = (change.source_key not in acknowledged if change.operation == DELETE
                    else acknowledged.get(change.source_key) == change.content_hash)
            if done:
                self.outcomes[OUTCOME[change.operation]] += 1
            else:
                to_send.append(change)
        self._item_ids = self.ledger.plan(self.run_id, self.flow, self.target, self.entity, to_send)
        # Sent by an earlier attempt whose answer never came: the target may have applied them already.
        self._sent_earlier = self.ledger.sent_before(self._item_ids.values())
        return to_send

    def deliver(self, change: PlannedChange, send: Callable[[], str | Written], *, label: str = "") -> str:
        """Send one planned change; ``send`` returns created / updated / deleted / unchanged (or a
        :class:`Written` with it). Returns the outcome counted. A refusal rejects the item and the run goes on;
        a record held back (:class:`~ledgerlink.errors.HeldBack`) is quarantined with its reasons and the run goes
        on; a target that stays down, or refuses our credentials, leaves the item open and raises. ``label``: the
        record's name for people (a customer's legal name), named beside its key in every error."""
        item_id = self._item_ids[change.source_key]
        named = f"{change.source_key} ({label})" if label else change.source_key
        what = f"{self.entity} {named}, {change.operation} in {self.target}"
        try:
            outcome = self.retry.call(what, lambda: self._attempt(item_id, send))
        except HeldBack as e:
            self._hold_back(change, e)
            return "held_back"
        except RemoteRejected as e:
            self.ledger.record_failure(item_id, str(e), terminal=True)
            self.outcomes["rejected"] += 1
            log.warning("%s refused %s %s: %s", self.target, self.entity, named, e)
            return "rejected"
        except (TransientError, AuthenticationFailed) as e:
            self.ledger.record_failure(item_id, str(e), terminal=False)
            raise
        outcome = self._counted(change, self._written(item_id, outcome), self.retry.attempts_of_last_call)
        self.ledger.acknowledge(self.flow, [self._acknowledgement(change)])
        self.outcomes[outcome] += 1
        return outcome

    def deliver_all(self, waves: Sequence[Sequence[PlannedChange]], sessions: Sequence[Session],
                    send: Callable[[Session, PlannedChange], str],
                    label: Callable[[PlannedChange], str] = lambda change: "") -> None:
        """Send planned changes through ``sessions`` at once, wave after wave; ``send(session, change)``
        returns created / updated / deleted / unchanged, and each session is used by one thread at a time.

        A wave starts once every change of the one before is acknowledged or rejected in the ledger (a later
        wave's records may reference an earlier one's). Outcomes, refusals and failures are those of
        :meth:`deliver`, item by item; a target that stays down or refuses our credentials stops the run:
        nothing more is handed out, what is in flight is answered and recorded, then the first such error is
        raised. The ledger is written from this thread, in batches: a block of changes is marked sent before
        it is handed to the sessions (a change of the block the run stops before sending is withdrawn, i.e.
        planned again), and answers are acknowledged ``ACK_BATCH`` at a time. ``label(change)``: the record's name
        for people, named beside its key in errors (as :meth:`deliver`'s ``label``)."""
        if not sessions:
            raise ValueError("deliver_all needs at least one session")
        free: queue.SimpleQueue = queue.SimpleQueue()
        for session in sessions:
            free.put(session)
        # Marked sent in blocks of at least a pool's worth, handed out as sessions free up.
        window, refill_at = max(2 * len(sessions), 8), len(sessions)
        pending_acks: list[tuple] = []
        stopped: BaseException | None = None
        flushed_at = time.monotonic()

        def flush() -> None:
            nonlocal flushed_at
            if pending_acks:
                with self._ledger_lock:
                    self.ledger.acknowledge(self.flow, pending_acks)
                pending_acks.clear()
            flushed_at = time.monotonic()

        def sent_by_a_session(change: PlannedChange) -> tuple[str, int]:
            session = free.get()
            try:
                return self._send_marked(change, lambda: send(session, change), label(change))
            finally:
                free.put(session)

        in_flight: dict[Future, PlannedChange] = {}
        with ThreadPoolExecutor(max_workers=len(sessions), thread_name_prefix=f"{self.flow}-session") as pool:
            try:
                for wave in waves:
                    waiting: deque[PlannedChange] = deque(wave)
                    while (waiting and stopped is None) or in_flight:
                        if waiting and stopped is None and len(in_flight) <= refill_at:
                            block = [waiting.popleft() for _ in range(min(window - len(in_flight), len(waiting)))]
                            with self._ledger_lock:
                                self.ledger.mark_sent([self._item_ids[c.source_key] for c in block], message_no=self.message_no)
                            for change in block:
                                in_flight[pool.submit(sent_by_a_session, change)] = change
                        done, _ = wait(in_flight, timeout=ACK_SECONDS, return_when=FIRST_COMPLETED)
                        for future in done:
                            change = in_flight.pop(future)
                            try:
                                outcome, attempts = future.result()
                            except HeldBack as e:
                                self._hold_back(change, e)
                            except RemoteRejected as e:
                                self._reject(change, e)
                            except BaseException as e:  # noqa: BLE001 - re-raised below, once the pool is drained
                                stopped = stopped or e
                            else:
                                outcome = self._counted(change, outcome, attempts)
                                pending_acks.append(self._acknowledgement(change))
                                self.outcomes[outcome] += 1
                        if stopped is not None:  # what no session has started yet never leaves
                            self._withdraw(self._cancel_unstarted(in_flight))
                        if len(pending_acks) >= ACK_BATCH or time.monotonic() - flushed_at >= ACK_SECONDS:
                            flush()
                    flush()  # the wave is settled in the ledger before the next one starts
                    if stopped is not None:
                        break
            except BaseException:
                # This thread was interrupted (a task timeout, the ledger failing): nothing more leaves; what was
                # answered is recorded if the ledger still can be, the rest stays open for the next attempt.
                unstarted = self._cancel_unstarted(in_flight)
                try:
                    self._withdraw(unstarted)
                    flush()
                except Exception as also:  # the ledger may be what failed: the first error is the one raised
                    log.warning("Ledger: recording the answers so far failed as well: %s", also)
                raise
        if stopped is not None:
            raise stopped

    @staticmethod
    def _cancel_unstarted(in_flight: dict[Future, PlannedChange]) -> list[PlannedChange]:
        """Take the changes no session has started out of ``in_flight``: they never leave."""
        unstarted = [future for future in in_flight if future.cancel()]
        return [in_flight.pop(future) for future in unstarted]

    def _send_marked(self, change: PlannedChange, send: Callable[[], str], label: str = "") -> tuple[str, int]:
        """In a session's thread: send a change ``deliver_all`` marked sent, retried as :meth:`deliver` does
        (each retry counted in the ledger before it leaves). Returns the target's answer and the attempts."""
        item_id = self._item_ids[change.source_key]
        named = f"{change.source_key} ({label})" if label else change.source_key
        what = f"{self.entity} {named}, {change.operation} in {self.target}"
        attempts = 0

        def attempt() -> str:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                with self._ledger_lock:
                    self.ledger.mark_sent([item_id], message_no=self.message_no)
            try:
                return send()
            except TransientError as e:
                with self._ledger_lock:
                    self.ledger.record_failure(item_id, str(e), terminal=False)
                raise

        try:
            # What the target answered is kept on the item before the answer is acknowledged (a crash in between
            # still knows the version we wrote): written here, in the session's thread, one item at a time.
            return self._written(item_id, self.retry.call(what, attempt)), attempts
        except (TransientError, AuthenticationFailed) as e:
            with self._ledger_lock:
                self.ledger.record_failure(item_id, str(e), terminal=False)
            raise

    def _written(self, item_id: int, outcome: str | Written) -> str:
        """The bare outcome; a :class:`Written`'s version and request are kept on the item first."""
        if not isinstance(outcome, Written):
            return outcome
        if outcome.version is not None or outcome.request is not None:
            with self._ledger_lock:
                self.ledger.record_written(item_id, version=outcome.version, request=outcome.request)
        return outcome.outcome

    def _hold_back(self, change: PlannedChange, error: HeldBack) -> None:
        with self._ledger_lock:
            self.ledger.hold_back(self._item_ids[change.source_key], str(error))
            self.ledger.quarantine(self.run_id, self.flow, self.entity, [(change.source_key, error.reasons, error.row)])
        self.outcomes["held_back"] += 1
        log.warning("%s", error)

    def _reject(self, change: PlannedChange, error: RemoteRejected) -> None:
        with self._ledger_lock:
            self.ledger.record_failure(self._item_ids[change.source_key], str(error), terminal=True)
        self.outcomes["rejected"] += 1
        log.warning("%s refused %s %s: %s", self.target, self.entity, change.source_key, error)

    def _withdraw(self, changes: list[PlannedChange]) -> None:
        """Changes marked sent that never left (the run stopped first): planned again."""
        if changes:
            with self._ledger_lock:
                self.ledger.withdraw_unsent([self._item_ids[c.source_key] for c in changes])

    def _counted(self, change: PlannedChange, outcome: str, attempts: int) -> str:
        """What a change did, from the target's answer."""
        if outcome != UNCHANGED:
            return outcome
        # The target holds the content already: from an earlier attempt of ours whose answer was lost (then it
        # is what that attempt did), or from elsewhere (then this run did nothing).
        lost_answer = self._item_ids[change.source_key] in self._sent_earlier or attempts > 1
        return OUTCOME[change.operation] if lost_answer else "already_in_target"

    def _acknowledgement(self, change: PlannedChange) -> tuple:
        return (self._item_ids[change.source_key], change.source_key, change.content_hash, change.target_key,
                change.operation)

    def _attempt(self, item_id: int, send: Callable[[], str]) -> str:
        """One attempt: the ledger counts it (and shows the item in flight) before the request leaves."""
        self.ledger.mark_sent([item_id], message_no=self.message_no)
        try:
            return send()
        except TransientError as e:
            self.ledger.record_failure(item_id, str(e), terminal=False)
            raise


class ChunkDelivery:
    """Chunks of lines to a transactional target (an SQL table): each chunk is one row of the ledger's
    ``chunks``, in flight while the target's transaction runs; its lines are recorded acknowledged in the ledger
    transaction that closes it, committed right after the target's. A retry of the run continues its chunks
    (attempts + 1) and sends only what is not acknowledged.

    ``chunks``: how many chunks the run has (indexes 0 to chunks - 1; -1 is its deletions)."""

    def __init__(self, ledger: Ledger, *, flow: str, run_id: str, target: str, entity: str, chunks: int):
        self.ledger, self.flow, self.run_id, self.target, self.entity = ledger, flow, run_id, target, entity
        self.chunks = chunks
        # Lines are never open (each is written once, acknowledged): only chunks are, and an open chunk of an
        # abandoned run is closed as superseded; this run sends what is still to send.
        ledger.close_superseded_chunks(flow, run_id)
        # Chunks an earlier attempt of this run already started: only their lines can be acknowledged already.
        self._attempted = {c["chunk_index"] for c in ledger.chunks(flow=flow, run_id=run_id)}

    def _in_flight(self, index: int, lines: int, operation: str) -> int:
        """The chunk's ledger row, sent before the target's transaction; a retry continues it."""
        if not -1 <= index < self.chunks:
            raise ValueError(f"chunk index {index} outside this run's chunks (0 to {self.chunks - 1}, -1)")
        return self.ledger.plan_chunk(self.run_id, self.flow, self.target, self.entity, index, operation, lines,
                                      sent=True)

    @contextlib.contextmanager
    def _failure_recorded(self, chunk_id: int) -> Iterator[None]:
        """A block that fails leaves the chunk open (the target rolled back, or may have committed: the retry
        finds its lines by content) with the error on it."""
        try:
            yield
        except Exception as e:
            try:
                self.ledger.record_chunk_failure(chunk_id, str(e), terminal=False)
            except Exception as also:  # the ledger itself may be what failed: the first error is the one raised
                log.warning("Ledger: recording chunk %s's failure failed as well: %s", chunk_id, also)
            raise

    def pending(self, index: int, batch: pd.DataFrame) -> pd.DataFrame:
        """The chunk's rows still to send: all of them, unless an earlier attempt of this run got some
        acknowledged."""
        if index not in self._attempted:
            return batch
        acknowledged = self.ledger.snapshot_hashes(self.flow, batch[KEY_COLUMN].tolist())
        if not acknowledged:
            return batch
        done = batch[KEY_COLUMN].map(acknowledged) == batch[HASH_COLUMN]
        return batch[~done.fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)

    def is_first_delivery(self, index: int, batch: pd.DataFrame) -> bool:
        """No key of the chunk was ever delivered (a first load's chunk: creations only, never attempted)."""
        return index not in self._attempted and bool((batch["_op"] == CREATE).all())

    @contextlib.contextmanager
    def writing(self, index: int, batch: pd.DataFrame, *, expect_new: bool) -> Iterator[None]:
        """The block writes the chunk into the target in one transaction; the ledger records the chunk's lines
        alongside and commits once the block returned."""
        chunk_id = self._in_flight(index, len(batch), UPSERT)
        with self._failure_recorded(chunk_id), self.ledger.recording_lines_alongside(
                self.flow, chunk_id, batch[KEY_COLUMN], batch[HASH_COLUMN], batch["_op"], expect_new=expect_new):
            yield

    def delete(self, keys: Sequence[str], remove: Callable[[list[str]], None]) -> int:
        """Deletions the target has not had yet (a retry skips those already done): ``remove`` deletes them in
        the target's transaction, then the ledger records them. Returns how many were deleted now."""
        still_acknowledged = sorted(self.ledger.snapshot_hashes(self.flow, list(keys)))
        if not still_acknowledged:
            return 0
        chunk_id = self._in_flight(-1, len(still_acknowledged), DELETE)
        with self._failure_recorded(chunk_id):
            remove(still_acknowledged)
        self.ledger.record_confirmed_lines(self.flow, chunk_id, still_acknowledged,
                                           [None] * len(still_acknowledged), [DELETE] * len(still_acknowledged))
        return len(still_acknowledged)


class MessageDelivery:
    """Many items in one numbered message, acknowledged later by that number: a file exchange with 1C (its
    exchange plans), where the receiver's own message back says which of ours it has received (``ReceivedNo``).

    The lifecycle, in order: :meth:`acknowledge_up_to` what the receiver confirmed (the items of every message
    up to that number are acknowledged and the snapshot moves); :meth:`open` this message's changes (change
    tracking against the snapshot puts what an earlier message carried without a confirmation among them again:
    re-sent with the same content in the next message, never dropped); :meth:`send` them in message
    :meth:`next_message_no` (the items are in flight, with that number, before the message leaves). An item that
    was acknowledged is never in a later message unless its content changes.

    ``outcomes`` counts the message's items as created (never acknowledged before) or updated (the target
    acknowledged other content), ``resent`` those an earlier message carried unconfirmed."""

    def __init__(self, ledger: Ledger, *, flow: str, run_id: str, target: str, entity: str):
        self.ledger, self.flow, self.run_id, self.target, self.entity = ledger, flow, run_id, target, entity
        self.outcomes: Counter = Counter({"created": 0, "updated": 0})
        self.resent = 0
        self._item_ids: dict[str, int] = {}

    def acknowledge_up_to(self, received_no: int) -> int:
        """The receiver has every message up to ``received_no``: acknowledge what they carried. Returns how many
        items were acknowledged now (none when an answer is read twice)."""
        return self.ledger.acknowledge_messages(self.flow, received_no)

    def waiting_keys(self) -> list[str]:
        """Items sent (or planned) and not acknowledged: the next message carries them again if they still
        differ from what the target acknowledged."""
        return self.ledger.open_keys(self.flow)

    def next_message_no(self) -> int:
        return self.ledger.last_message_no(self.flow) + 1

    def open(self, changes: Sequence[PlannedChange]) -> list[PlannedChange]:
        """Plan the message's changes (those not acknowledged with this content) and return them, in order.
        Open items no longer among the changes (their content changed back to what the target acknowledged)
        are closed as superseded."""
        self.ledger.close_superseded(self.flow, {c.source_key for c in changes})
        acknowledged = self.ledger.snapshot_hashes(self.flow, [c.source_key for c in changes])
        waiting = set(self.ledger.open_keys(self.flow))
        to_send = [c for c in changes if acknowledged.get(c.source_key) != c.content_hash]
        for change in to_send:
            self.outcomes[OUTCOME[change.operation]] += 1
            self.resent += change.source_key in waiting
        self._item_ids = self.ledger.plan(self.run_id, self.flow, self.target, self.entity, to_send)
        return to_send

    def send(self, message_no: int, changes: Sequence[PlannedChange], deliver: Callable[[], None]) -> None:
        """Mark the changes in flight in message ``message_no``, then ``deliver`` it. A delivery that fails
        leaves them open with the error (the next message carries them again) and raises."""
        ids = [self._item_ids[c.source_key] for c in changes]
        self.ledger.mark_sent(ids, message_no=message_no)
        try:
            deliver()
        except Exception as e:
            for item_id in ids:
                self.ledger.record_failure(item_id, f"message {message_no}: {e}", terminal=False)
            raise
