"""The ledger's items: planned, sent, acknowledged or rejected, one per record sent to a target that answers
per record (a chunked load's chunks are in :mod:`~ledgerlink.ledger.chunks`)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa

from ledgerlink.ledger.models import (ACKNOWLEDGED, OPEN_STATUSES, PLANNED, REJECTED, SENT, SUPERSEDED, Item,
                                      LedgerPart, PlannedChange, _chunks, utcnow)
from ledgerlink.ledger.postgres import _acknowledge_postgres, _plan_postgres
from ledgerlink.ledger.snapshots import _move_snapshot


class Items(LedgerPart):
    """Items: part of :class:`~ledgerlink.ledger.Ledger`, which gives it ``engine``, ``_postgres`` (whether the
    PostgreSQL bulk paths apply) and ``_flow_id``."""

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

    def withdraw_unsent(self, item_ids: Iterable[int]) -> None:
        """Undo ``mark_sent`` for items marked ahead of their send that never left (the run stopped first):
        one attempt fewer, and an item no earlier attempt sent is planned again, not in flight."""
        ids = list(item_ids)
        never_sent = Item.attempts <= 1
        with self.engine.begin() as conn:
            for chunk in _chunks(ids, 900):
                conn.execute(sa.update(Item).where(Item.id.in_(chunk), Item.status == SENT).values(
                    status=sa.case((never_sent, PLANNED), else_=Item.status),
                    sent_at=sa.case((never_sent, None), else_=Item.sent_at),
                    attempts=Item.attempts - 1, updated_at=utcnow()))

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

    def items(self, flow: str | None = None, run_id: str | None = None) -> list[dict]:
        query = sa.select(Item).order_by(Item.id)
        if flow:
            query = query.where(Item.flow == flow)
        if run_id:
            query = query.where(Item.run_id == run_id)
        return self._dicts(query)

    def _item_history(self, target: str | None, since: datetime | None, flow: str | None) -> list[dict]:
        query = sa.select(Item).where(Item.status != PLANNED).order_by(Item.updated_at, Item.id)
        if target:
            query = query.where(Item.target == target)
        if since:
            query = query.where(Item.updated_at >= since)
        if flow:
            query = query.where(Item.flow == flow)
        return self._dicts(query)

    def _items_open(self, target: str | None) -> list[dict]:
        query = sa.select(Item).where(Item.status.in_(OPEN_STATUSES)).order_by(Item.planned_at, Item.id)
        if target:
            query = query.where(Item.target == target)
        return self._dicts(query)
