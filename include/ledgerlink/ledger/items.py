"""The ledger's items: planned, sent, acknowledged or rejected, one per record sent to a target that answers
per record (a chunked load's chunks are in :mod:`~ledgerlink.ledger.chunks`)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa

from ledgerlink.ledger.models import (ACKNOWLEDGED, OPEN_STATUSES, PLANNED, QUARANTINED, REJECTED, SENT, SUPERSEDED,
                                      Item, LedgerPart, PlannedChange, _chunks, utcnow)
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

    def record_written(self, item_id: int, *, version: str | None, request: str | None) -> None:
        """What the target answered to a write, kept on the item before it is acknowledged: the version the target
        gave the record (so a crash before the acknowledgement still knows what we wrote) and the request."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(Item).where(Item.id == item_id).values(
                target_version=version[:64] if version else None, request=request[:500] if request else None,
                updated_at=utcnow()))

    def hold_back(self, item_id: int, reason: str) -> None:
        """The item was held back at the target's door (an edit made in the target, a reference it lacks): closed
        as quarantined, with the reason; the record is sent again by a later run once it differs from the snapshot."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(Item).where(Item.id == item_id).values(
                status=QUARANTINED, last_error=reason[:2000], updated_at=utcnow()))

    def target_versions(self, flow: str, keys: Sequence[str]) -> dict[str, str]:
        """source_key -> the version the target gave the record at our last write of it (the latest item of the
        key that has one); keys never written with a version are absent."""
        found: dict[str, tuple[int, str]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(keys), 900):
                for key, item_id, version in conn.execute(
                        sa.select(Item.source_key, Item.id, Item.target_version).where(
                            Item.flow == flow, Item.source_key.in_(chunk), Item.target_version.is_not(None))):
                    if key not in found or item_id > found[key][0]:
                        found[key] = (item_id, version)
        return {key: version for key, (_, version) in found.items()}

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

    # messages: many items in one numbered message, acknowledged later by that number ------------------------
    def last_message_no(self, flow: str) -> int:
        """The highest message number any item of the flow was sent in (0 before the first message)."""
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.max(Item.message_no)).where(Item.flow == flow)) or 0)

    def acknowledge_messages(self, flow: str, received_no: int) -> int:
        """The receiver confirmed every message up to ``received_no``: the items still waiting in one of them are
        acknowledged (and the snapshot moves with them). An item re-sent since in a later message waits for
        that one: the receiver may not hold what the later message carries. Returns how many."""
        with self.engine.connect() as conn:
            waiting = [tuple(r) for r in conn.execute(
                sa.select(Item.id, Item.source_key, Item.content_hash, Item.target_key, Item.operation).where(
                    Item.flow == flow, Item.status == SENT, Item.message_no <= received_no))]
        self.acknowledge(flow, waiting)
        return len(waiting)

    def awaiting_acknowledgement(self, flow: str) -> dict[int, int]:
        """Message number -> items of the flow sent in it and not acknowledged yet."""
        with self.engine.connect() as conn:
            return {int(no): int(n) for no, n in conn.execute(
                sa.select(Item.message_no, sa.func.count()).where(Item.flow == flow, Item.status == SENT,
                                                                  Item.message_no.is_not(None))
                .group_by(Item.message_no))}

    def open_keys(self, flow: str) -> list[str]:
        """Keys of the flow's open (planned or sent) items."""
        with self.engine.connect() as conn:
            return list(conn.scalars(sa.select(Item.source_key).where(Item.flow == flow,
                                                                      Item.status.in_(OPEN_STATUSES))))

    def items(self, flow: str | None = None, run_id: str | None = None) -> list[dict]:
        query = sa.select(Item).order_by(Item.id)
        if flow:
            query = query.where(Item.flow == flow)
        if run_id:
            query = query.where(Item.run_id == run_id)
        return self._dicts(query)

    def _item_history(self, target: str | None, since: datetime | None, flow: str | None,
                      entity: str | None = None, until: datetime | None = None) -> list[dict]:
        query = sa.select(Item).where(Item.status != PLANNED).order_by(Item.updated_at, Item.id)
        if target:
            query = query.where(Item.target == target)
        if since:
            query = query.where(Item.updated_at >= since)
        if until:
            query = query.where(Item.updated_at < until)
        if flow:
            query = query.where(Item.flow == flow)
        if entity:
            query = query.where(Item.entity == entity)
        return self._dicts(query)

    def _items_open(self, target: str | None, entity: str | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> list[dict]:
        query = sa.select(Item).where(Item.status.in_(OPEN_STATUSES)).order_by(Item.planned_at, Item.id)
        if target:
            query = query.where(Item.target == target)
        if entity:
            query = query.where(Item.entity == entity)
        if since:
            query = query.where(Item.planned_at >= since)
        if until:
            query = query.where(Item.planned_at < until)
        return self._dicts(query)
