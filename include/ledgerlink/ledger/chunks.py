"""The ledger's chunks: a chunked (SQL) load sends its lines in chunks, each planned, sent while the target's
transaction runs, and acknowledged in the ledger transaction that records its lines (or rejected); and the
per-line history read back under them. Lines are never items: each is written once, acknowledged."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

import sqlalchemy as sa

from ledgerlink.ledger.models import (ACKNOWLEDGED, DELETE, OPEN_STATUSES, PLANNED, REJECTED, SENT, Chunk, Flow,
                                      LedgerPart, Snapshot, _chunks, deliveries, utcnow)
from ledgerlink.ledger.postgres import _write_lines_postgres
from ledgerlink.ledger.snapshots import _move_snapshot

log = logging.getLogger(__name__)


class Chunks(LedgerPart):
    """Chunks, their lines and the per-line history: part of :class:`~ledgerlink.ledger.Ledger`, which gives it
    ``engine``, ``_postgres`` (whether the PostgreSQL bulk paths apply) and ``_flow_id``."""

    _postgres: bool
    _flow_id: Callable[..., int | None]

    def plan_chunk(self, run_id: str, flow: str, target: str, entity: str, index: int, operation: str, lines: int,
                   *, sent: bool = False) -> int:
        """Record a chunk about to be sent (``index``: its place in the run, -1 for the run's deletions) and
        return its id. A retry of the run continues the chunk of the same index, never doubles it. ``sent``:
        it is sent at once (``mark_chunk_sent`` in the same statement: attempts + 1)."""
        now = utcnow()
        changes = {"operation": operation, "lines": lines, "updated_at": now}
        if sent:
            changes.update(status=SENT, sent_at=now, attempts=Chunk.attempts + 1)
        else:  # an open chunk stays as it is (sent before: the target may hold it); a closed one goes again
            changes["status"] = sa.case((Chunk.status.in_(OPEN_STATUSES), Chunk.status), else_=PLANNED)
        with self.engine.begin() as conn:
            found = conn.scalar(sa.update(Chunk).where(Chunk.flow == flow, Chunk.run_id == run_id,
                                                       Chunk.chunk_index == index)
                                .values(**changes).returning(Chunk.id))
            if found is not None:
                return found
            return conn.scalar(sa.insert(Chunk).values(
                run_id=run_id, flow=flow, target=target, entity=entity, chunk_index=index, operation=operation,
                lines=lines, status=SENT if sent else PLANNED, attempts=1 if sent else 0, planned_at=now,
                sent_at=now if sent else None, updated_at=now).returning(Chunk.id))

    def mark_chunk_sent(self, chunk_id: int) -> None:
        """The chunk leaves now (its target's transaction begins): attempts + 1."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(sa.update(Chunk).where(Chunk.id == chunk_id).values(
                status=SENT, sent_at=now, attempts=Chunk.attempts + 1, updated_at=now))

    def record_chunk_failure(self, chunk_id: int, error: str, *, terminal: bool) -> None:
        """Sending the chunk failed: a terminal failure rejects it; otherwise it stays open for the retry."""
        values = {"last_error": error[:2000], "updated_at": utcnow()}
        if terminal:
            values["status"] = REJECTED
        with self.engine.begin() as conn:
            conn.execute(sa.update(Chunk).where(Chunk.id == chunk_id).values(**values))

    def close_superseded_chunks(self, flow: str, run_id: str) -> int:
        """Reject the flow's open chunks of other runs (abandoned: this run sends what is still to send). Returns
        how many."""
        with self.engine.begin() as conn:
            return conn.execute(sa.update(Chunk).where(
                Chunk.flow == flow, Chunk.run_id != run_id, Chunk.status.in_(OPEN_STATUSES)).values(
                status=REJECTED, updated_at=utcnow(),
                last_error=f"superseded: run {run_id} took over and sends what is still to send")).rowcount

    def record_confirmed_lines(self, flow: str, chunk_id: int, keys: Sequence[str],
                               hashes: Sequence[str | None], operations: Sequence[str], *,
                               expect_new: bool = False) -> None:
        """A transactional target committed a chunk: the snapshot moves to its lines (each now its line's
        latest delivery, the deliveries they supersede and the chunk's deletions kept in ``deliveries``), and
        the chunk closes, acknowledged, all in one ledger transaction.

        A SQL target takes a chunk in one commit, so no line of it can be sent-but-unconfirmed on its own: the
        chunk carries that state while it is in flight, and each line is written once, confirmed.
        Columns, not row objects: at a million lines a Python object per line costs more than the database.
        ``expect_new``: the caller believes none of the keys is in the snapshot yet (a first load: creations
        only), so on PostgreSQL the snapshot rows are COPied in without first deleting old ones; a key that is
        there after all rolls back to a savepoint and takes the delete-then-insert path. SQLite always takes it.
        """
        flow_id = self._flow_id(flow)
        if self._postgres:
            with self.engine.begin() as conn:
                _write_lines_postgres(conn, flow_id, chunk_id, keys, hashes, operations, expect_new)
                conn.execute(_close_chunk(chunk_id))
            return
        now = utcnow()
        rows = list(zip(keys, hashes, operations))
        with self.engine.begin() as conn:
            for chunk in _chunks(rows, 5000):
                _move_snapshot(conn, flow_id, [(key, digest, None, operation) for key, digest, operation in chunk],
                               now, chunk_id=chunk_id)
                deletions = [{"chunk_id": chunk_id, "source_key": key, "content_hash": digest,
                              "operation": operation} for key, digest, operation in chunk if operation == DELETE]
                if deletions:
                    conn.execute(sa.insert(deliveries), deletions)
            conn.execute(_close_chunk(chunk_id))

    @contextlib.contextmanager
    def recording_lines_alongside(self, flow: str, chunk_id: int, keys: Sequence[str],
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
            self.record_confirmed_lines(flow, chunk_id, keys, hashes, operations, expect_new=expect_new)
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
                        _write_lines_postgres(conn, flow_id, chunk_id, keys, hashes, operations, expect_new)
                        sent.wait()
                        if not verdict["commit"]:
                            transaction.rollback()
                            return
                        conn.execute(_close_chunk(chunk_id))  # acknowledged now, not when writing began
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
                log.warning("Ledger: writing chunk %s's lines failed as well: %s", chunk_id, failure[0])
            raise
        verdict["commit"] = True
        sent.set()
        writer.join()
        if failure:
            raise failure[0]

    def chunks(self, flow: str | None = None, run_id: str | None = None) -> list[dict]:
        """The chunks, in the order they were first planned."""
        query = sa.select(Chunk).order_by(Chunk.id)
        if flow:
            query = query.where(Chunk.flow == flow)
        if run_id:
            query = query.where(Chunk.run_id == run_id)
        return self._dicts(query)

    def _chunk_history(self, target: str | None, since: datetime | None, flow: str | None,
                       entity: str | None = None, until: datetime | None = None) -> list[dict]:
        query = sa.select(Chunk).where(Chunk.status != PLANNED).order_by(Chunk.updated_at, Chunk.id)
        if target:
            query = query.where(Chunk.target == target)
        if since:
            query = query.where(Chunk.updated_at >= since)
        if until:
            query = query.where(Chunk.updated_at < until)
        if flow:
            query = query.where(Chunk.flow == flow)
        if entity:
            query = query.where(Chunk.entity == entity)
        return self._dicts(query)

    def _chunks_open(self, target: str | None, entity: str | None = None, since: datetime | None = None,
                     until: datetime | None = None) -> list[dict]:
        query = sa.select(Chunk).where(Chunk.status.in_(OPEN_STATUSES)).order_by(Chunk.planned_at, Chunk.id)
        if target:
            query = query.where(Chunk.target == target)
        if entity:
            query = query.where(Chunk.entity == entity)
        if since:
            query = query.where(Chunk.planned_at >= since)
        if until:
            query = query.where(Chunk.planned_at < until)
        return self._dicts(query)

    def deliveries(self, flow: str | None = None, run_id: str | None = None, key: str | None = None) -> list[dict]:
        """The per-line history of chunked loads, each line with its chunk's run, target and time: the
        superseded deliveries and deletions in ``deliveries``, each line's latest in the snapshot. By key it
        is two index lookups; by run it reads the flow's whole snapshot, which has no index by chunk (a BRIN
        one cost a first load 7% of its ledger time)."""
        superseded = sa.select(deliveries.c.chunk_id, deliveries.c.source_key, deliveries.c.content_hash,
                               deliveries.c.operation)
        latest = sa.select(Snapshot.chunk_id, Snapshot.source_key, Snapshot.content_hash,
                           Snapshot.operation).where(Snapshot.chunk_id.is_not(None))
        if flow:
            latest = latest.where(Snapshot.flow_id == sa.select(Flow.id).where(Flow.name == flow).scalar_subquery())
        if key:
            superseded = superseded.where(deliveries.c.source_key == key)
            latest = latest.where(Snapshot.source_key == key)
        lines = sa.union_all(superseded, latest).subquery("lines")
        query = (sa.select(Chunk.run_id, Chunk.flow, Chunk.target, Chunk.entity, lines.c.source_key,
                           lines.c.content_hash, lines.c.operation, lines.c.chunk_id, Chunk.acknowledged_at)
                 .join(Chunk, Chunk.id == lines.c.chunk_id)
                 .order_by(lines.c.chunk_id, lines.c.source_key))
        if flow:
            query = query.where(Chunk.flow == flow)
        if run_id:
            query = query.where(Chunk.run_id == run_id)
        return self._dicts(query)


def _close_chunk(chunk_id: int):
    now = utcnow()
    return sa.update(Chunk).where(Chunk.id == chunk_id).values(
        status=ACKNOWLEDGED, acknowledged_at=now, updated_at=now, last_error=None)


def describe_chunk(chunk: Mapping) -> str:
    """A chunk as a person reads it, e.g. "chunk 3 of run R: 200000 lines, acknowledged at 2026-11-02 02:31:07
    UTC". Chunks count from 1 here (``chunk_index`` + 1); the run's deletions are "deletions of run R"."""
    index = chunk["chunk_index"]
    which = "deletions" if index == -1 else "a chunk" if index is None else f"chunk {index + 1}"
    what = f"{which} of run {chunk['run_id']}: {chunk['lines']} lines"
    status = chunk["status"]
    if status == ACKNOWLEDGED:
        return f"{what}, acknowledged at {_at(chunk['acknowledged_at'])}"
    if status == SENT:
        return f"{what}, sent at {_at(chunk['sent_at'])}, not confirmed yet (attempt {chunk['attempts']})"
    if status == PLANNED:
        return f"{what}, waiting to go since {_at(chunk['planned_at'])}"
    return f"{what}, {status} at {_at(chunk['updated_at'])}: {chunk['last_error']}"


def _at(moment: datetime | None) -> str:
    """A ledger time in UTC, to the second (SQLite gives them back without their zone: they were written in UTC)."""
    if moment is None:
        return "an unknown time"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
