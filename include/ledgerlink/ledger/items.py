"""The ledger's items: planned, sent, acknowledged or rejected, per record or per chunk of lines; and the
history read back from them."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa

from ledgerlink.ledger.models import (ACKNOWLEDGED, DELETE, OPEN_STATUSES, PLANNED, REJECTED, SENT, SUPERSEDED, Flow,
                                      Item, LedgerPart, PlannedChange, Snapshot, _chunks, deliveries, utcnow)
from ledgerlink.ledger.postgres import _acknowledge_postgres, _plan_postgres, _write_lines_postgres
from ledgerlink.ledger.snapshots import _move_snapshot

log = logging.getLogger(__name__)


class Items(LedgerPart):
    """Items, a chunk's lines and the history: part of :class:`~ledgerlink.ledger.Ledger`, which gives it
    ``engine``, ``_postgres`` (whether the PostgreSQL bulk paths apply) and ``_flow_id``."""

    _postgres: bool
    _flow_id: Callable[..., int | None]

    def plan(self, run_id: str, flow: str, target: str, entity: str,
             changes: Sequence[PlannedChange]) -> dict[str, int]:
        """Record the changes about to be sent; an open item left by a failed attempt is continued, not doubled.

        Returns source_key -> item id.
        """
        now = utcnow()
        if self._postgres:
            return _plan_postgres(self.engine, run_id, flow, target, entity, changes, now)
        with self.engine.begin() as conn:
            open_items = {key: item_id for key, item_id in conn.execute(
                sa.select(Item.source_key, Item.id).where(Item.flow == flow, Item.status.in_(OPEN_STATUSES)))}
            new_rows, continued = [], []
            for change in changes:
                if change.source_key in open_items:
                    continued.append({"b_id": open_items[change.source_key], "b_run": run_id,
                                      "b_hash": change.content_hash, "b_op": change.operation,
                                      "b_tk": change.target_key})
                else:
                    new_rows.append({"run_id": run_id, "flow": flow, "target": target, "entity": entity,
                                     "source_key": change.source_key, "target_key": change.target_key,
                                     "content_hash": change.content_hash, "operation": change.operation,
                                     "status": PLANNED, "attempts": 0, "planned_at": now, "updated_at": now})
            if continued:
                conn.execute(sa.update(Item).where(Item.id == sa.bindparam("b_id")).values(
                    run_id=sa.bindparam("b_run"), content_hash=sa.bindparam("b_hash"),
                    operation=sa.bindparam("b_op"), target_key=sa.bindparam("b_tk"), updated_at=now), continued)
            if new_rows:
                conn.execute(sa.insert(Item), new_rows)
            return {key: item_id for key, item_id in conn.execute(
                sa.select(Item.source_key, Item.id).where(Item.flow == flow, Item.status.in_(OPEN_STATUSES)))}

    def plan_and_mark_sent(self, run_id: str, flow: str, target: str, entity: str,
                           changes: Sequence[PlannedChange], message_no: int | None = None) -> dict[str, int]:
        """``plan`` then ``mark_sent`` of every planned item, for a caller that sends them at once.

        Nothing happens between the two in such a caller, so on PostgreSQL both are one transaction of
        set-based statements (the items are written once, not twice); elsewhere it calls the two in turn.
        """
        if self._postgres:
            return _plan_postgres(self.engine, run_id, flow, target, entity, changes, utcnow(), sent=True,
                                  message_no=message_no)
        item_ids = self.plan(run_id, flow, target, entity, changes)
        self.mark_sent((item_ids[c.source_key] for c in changes), message_no=message_no)
        return item_ids

    def close_superseded(self, flow: str, still_wanted: set[str]) -> int:
        """Close open items whose record no longer needs sending (it changed back, or was loaded since).

        Called once per run with every key the run will send, never per chunk.
        """
        with self.engine.begin() as conn:
            open_items = list(conn.execute(sa.select(Item.source_key, Item.id).where(
                Item.flow == flow, Item.status.in_(OPEN_STATUSES))))
            stale = [item_id for key, item_id in open_items if key not in still_wanted]
            for chunk in _chunks(stale, 5000):
                conn.execute(sa.update(Item).where(Item.id.in_(chunk)).values(
                    status=REJECTED, last_error=SUPERSEDED, updated_at=utcnow()))
            return len(stale)

    def sent_before(self, item_ids: Iterable[int]) -> set[int]:
        """Of these open items, those an earlier attempt already sent: their answer may have been lost, so a
        target found holding their content got it from us."""
        ids, found = list(item_ids), set()
        with self.engine.connect() as conn:
            for chunk in _chunks(ids, 900):
                found.update(conn.scalars(sa.select(Item.id).where(Item.id.in_(chunk), Item.status == SENT)))
        return found

    def mark_sent(self, item_ids: Iterable[int], message_no: int | None = None) -> None:
        ids = list(item_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            if self._postgres:  # one statement, the ids as one array parameter
                now = utcnow()
                conn.execute(sa.text(
                    "UPDATE items SET status = :status, sent_at = :now, attempts = attempts + 1, "
                    "message_no = :message_no, updated_at = :now WHERE id = ANY(:ids)"),
                    {"status": SENT, "now": now, "message_no": message_no, "ids": ids})
                return
            for chunk in _chunks(ids, 5000):
                conn.execute(sa.update(Item).where(Item.id.in_(chunk)).values(
                    status=SENT, sent_at=utcnow(), attempts=Item.attempts + 1, message_no=message_no,
                    updated_at=utcnow()))

    def record_failure(self, item_id: int, error: str, *, terminal: bool) -> None:
        """A send failed: terminal failures reject the item; transient ones leave it open for the retry."""
        with self.engine.begin() as conn:
            values = {"last_error": error[:2000], "updated_at": utcnow()}
            if terminal:
                values["status"] = REJECTED
            conn.execute(sa.update(Item).where(Item.id == item_id).values(**values))

    def acknowledge(self, flow: str, acknowledged: Sequence[tuple[int, str, str | None, str | None, str]]) -> None:
        """Receiver confirmed: close the items and move the snapshot, in one transaction.

        ``acknowledged``: (item_id, source_key, content_hash, target_key, operation) tuples.
        """
        if not acknowledged:
            return
        now, flow_id = utcnow(), self._flow_id(flow)
        if self._postgres:
            _acknowledge_postgres(self.engine, flow_id, acknowledged, now)
            return
        with self.engine.begin() as conn:
            for chunk in _chunks(list(acknowledged), 5000):
                conn.execute(sa.update(Item).where(Item.id == sa.bindparam("b_id")).values(
                    status=ACKNOWLEDGED, acknowledged_at=now, updated_at=now, last_error=None,
                    target_key=sa.bindparam("b_tk")),
                    [{"b_id": item_id, "b_tk": target_key} for item_id, _, _, target_key, _ in chunk])
                _move_snapshot(conn, flow_id, [(key, h, tk, op) for _, key, h, tk, op in chunk], now)

    def record_confirmed_lines(self, flow: str, chunk_item_id: int, keys: Sequence[str],
                               hashes: Sequence[str | None], operations: Sequence[str], *,
                               expect_new: bool = False) -> None:
        """A transactional target committed a chunk: the snapshot moves to its lines (each now its line's
        latest delivery, the deliveries they supersede and the chunk's deletions kept in ``deliveries``), and
        the chunk's own item closes, all in one ledger transaction.

        A SQL target takes a chunk in one commit, so no line of it can be sent-but-unconfirmed on its own: the
        chunk's item carries that state while the chunk is in flight, and each line is written once, confirmed.
        Columns, not row objects: at a million lines a Python object per line costs more than the database.
        ``expect_new``: the caller believes none of the keys is in the snapshot yet (a first load: creations
        only), so on PostgreSQL the snapshot rows are COPied in without first deleting old ones; a key that is
        there after all rolls back to a savepoint and takes the delete-then-insert path. SQLite always takes it.
        """
        flow_id = self._flow_id(flow)
        if self._postgres:
            with self.engine.begin() as conn:
                _write_lines_postgres(conn, flow_id, chunk_item_id, keys, hashes, operations, expect_new)
                conn.execute(_close_chunk(chunk_item_id))
            return
        now = utcnow()
        rows = list(zip(keys, hashes, operations))
        with self.engine.begin() as conn:
            for chunk in _chunks(rows, 5000):
                _move_snapshot(conn, flow_id, [(key, digest, None, operation) for key, digest, operation in chunk],
                               now, chunk_item_id=chunk_item_id)
                deletions = [{"chunk_item_id": chunk_item_id, "source_key": key, "content_hash": digest,
                              "operation": operation} for key, digest, operation in chunk if operation == DELETE]
                if deletions:
                    conn.execute(sa.insert(deliveries), deletions)
            conn.execute(_close_chunk(chunk_item_id))

    @contextlib.contextmanager
    def recording_lines_alongside(self, flow: str, chunk_item_id: int, keys: Sequence[str],
                                  hashes: Sequence[str | None], operations: Sequence[str], *,
                                  expect_new: bool = False):
        """``record_confirmed_lines`` for the chunk the block sends: on PostgreSQL the ledger writes the lines
        in a thread while the block has the target take them, and commits only once the block has finished
        (the target committed); if the block fails, the ledger's transaction rolls back and nothing is
        recorded. Two servers on two cores: a 1M-line load went from 6.2 s (one after the other) to 4.0 s.

        What a crash can leave is what it could before, in a narrower window: the target committed, the
        ledger not yet; the retry finds those lines by content. SQLite writes one at a time anyway: there the
        lines are recorded after the block, as ``record_confirmed_lines``.
        """
        if not self._postgres:
            yield
            self.record_confirmed_lines(flow, chunk_item_id, keys, hashes, operations, expect_new=expect_new)
            return
        import threading

        flow_id = self._flow_id(flow)
        sent = threading.Event()  # set once the block's outcome is known
        verdict = {"commit": False}
        failure: list[BaseException] = []

        def write() -> None:
            try:
                with self.engine.connect() as conn:
                    transaction = conn.begin()
                    try:
                        _write_lines_postgres(conn, flow_id, chunk_item_id, keys, hashes, operations,
                                              expect_new)
                        sent.wait()
                        if not verdict["commit"]:
                            transaction.rollback()
                            return
                        conn.execute(_close_chunk(chunk_item_id))  # acknowledged now, not when writing began
                        transaction.commit()
                    except BaseException:
                        transaction.rollback()
                        raise
            except BaseException as error:  # raised in the caller's thread
                failure.append(error)

        writer = threading.Thread(target=write, name="ledger-lines", daemon=True)
        writer.start()
        try:
            yield
        except BaseException:
            sent.set()
            writer.join()
            if failure:  # the block's own error is the one raised
                log.warning("Ledger: writing chunk item %s's lines failed as well: %s", chunk_item_id, failure[0])
            raise
        verdict["commit"] = True
        sent.set()
        writer.join()
        if failure:
            raise failure[0]

    def items(self, flow: str | None = None, run_id: str | None = None) -> list[dict]:
        query = sa.select(Item).order_by(Item.id)
        if flow:
            query = query.where(Item.flow == flow)
        if run_id:
            query = query.where(Item.run_id == run_id)
        return self._dicts(query)

    def history(self, target: str | None = None, since: datetime | None = None, flow: str | None = None) -> list[dict]:
        """What went where and when, with what result (everything that left the planned state)."""
        query = sa.select(Item).where(Item.status != PLANNED).order_by(Item.updated_at, Item.id)
        if target:
            query = query.where(Item.target == target)
        if since:
            query = query.where(Item.updated_at >= since)
        if flow:
            query = query.where(Item.flow == flow)
        return self._dicts(query)

    def planned(self, target: str | None = None) -> list[dict]:
        """What is waiting to go, or went without a confirmation yet."""
        query = sa.select(Item).where(Item.status.in_(OPEN_STATUSES)).order_by(Item.planned_at, Item.id)
        if target:
            query = query.where(Item.target == target)
        return self._dicts(query)

    def deliveries(self, flow: str | None = None, run_id: str | None = None, key: str | None = None) -> list[dict]:
        """The per-line history of chunked loads, each line with its chunk's run, target and time: the
        superseded deliveries and deletions in ``deliveries``, each line's latest in the snapshot. By key it
        is two index lookups; by run it reads the flow's whole snapshot, which has no index by chunk (a BRIN
        one cost a first load 7% of its ledger time)."""
        superseded = sa.select(deliveries.c.chunk_item_id, deliveries.c.source_key, deliveries.c.content_hash,
                               deliveries.c.operation)
        latest = sa.select(Snapshot.chunk_item_id, Snapshot.source_key, Snapshot.content_hash,
                           Snapshot.operation).where(Snapshot.chunk_item_id.is_not(None))
        if flow:
            latest = latest.where(Snapshot.flow_id == sa.select(Flow.id).where(Flow.name == flow).scalar_subquery())
        if key:
            superseded = superseded.where(deliveries.c.source_key == key)
            latest = latest.where(Snapshot.source_key == key)
        lines = sa.union_all(superseded, latest).subquery("lines")
        query = (sa.select(Item.run_id, Item.flow, Item.target, Item.entity, lines.c.source_key,
                           lines.c.content_hash, lines.c.operation, lines.c.chunk_item_id, Item.acknowledged_at)
                 .join(Item, Item.id == lines.c.chunk_item_id)
                 .order_by(lines.c.chunk_item_id, lines.c.source_key))
        if flow:
            query = query.where(Item.flow == flow)
        if run_id:
            query = query.where(Item.run_id == run_id)
        return self._dicts(query)


def _close_chunk(chunk_item_id: int):
    now = utcnow()
    return sa.update(Item).where(Item.id == chunk_item_id).values(
        status=ACKNOWLEDGED, acknowledged_at=now, updated_at=now, last_error=None)
