"""The ledger's snapshots and watermarks: what each target last acknowledged, and how far each flow read."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

import sqlalchemy as sa

from ledgerlink.ledger.models import DELETE, UPDATE, LedgerPart, Snapshot, Watermark, _chunks, deliveries, utcnow
from ledgerlink.ledger.postgres import _arrow_strings, _copy_arrow, _replace_snapshot_rows
from ledgerlink.timestamps import moment


class Snapshots(LedgerPart):
    """Snapshots and watermarks: part of :class:`~ledgerlink.ledger.Ledger`, which gives it ``engine``,
    ``_postgres`` (whether the PostgreSQL bulk paths apply) and ``_flow_id``."""

    _postgres: bool
    _flow_id: Callable[..., int | None]

    def snapshot(self, flow: str) -> dict[str, tuple[str, str | None]]:
        """source_key -> (content_hash, target_key) as last acknowledged."""
        flow_id = self._flow_id(flow, create=False)
        if flow_id is None:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(Snapshot.source_key, Snapshot.content_hash, Snapshot.target_key)
                                .where(Snapshot.flow_id == flow_id))
            return {key: (content_hash, target_key) for key, content_hash, target_key in rows}

    def forget(self, flow: str, keys: Iterable[str]) -> int:
        """Drop these keys from a flow's snapshot: change tracking then sees them as never acknowledged, so
        the next run sends them again. Returns how many snapshot rows were dropped."""
        flow_id = self._flow_id(flow, create=False)
        dropped = 0
        if flow_id is None:
            return dropped
        with self.engine.begin() as conn:
            for chunk in _chunks(list(keys), 900):
                _keep_latest_deliveries(conn, flow_id, chunk)
                dropped += conn.execute(sa.delete(Snapshot).where(Snapshot.flow_id == flow_id,
                                                                  Snapshot.source_key.in_(chunk))).rowcount
        return dropped

    def put_snapshot(self, flow: str, keys: Sequence[str], hashes: Sequence[str]) -> None:
        """Record derived tracking state directly (no delivery items): what a flow last saw of related data."""
        if not len(keys):
            return
        now, flow_id = utcnow(), self._flow_id(flow)
        if self._postgres:
            import pyarrow as pa

            rows = pa.table({"source_key": _arrow_strings(keys), "content_hash": _arrow_strings(hashes)})
            with self.engine.begin() as conn:
                _copy_arrow(conn, "ledgerlink_put", "source_key text, content_hash text", rows)
                _replace_snapshot_rows(conn, "ledgerlink_put", flow_id, now, distinct=True, has_operation=False)
            return
        keys, hashes = list(keys), list(hashes)
        with self.engine.begin() as conn:
            for start in range(0, len(keys), 5000):
                chunk = list(zip(keys[start:start + 5000], hashes[start:start + 5000]))
                _move_snapshot(conn, flow_id, [(key, digest, None, UPDATE) for key, digest in chunk], now)

    def watermark(self, flow: str, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(Watermark.value).where(Watermark.flow == flow, Watermark.name == name))

    def set_watermark(self, flow: str, name: str, value: str) -> None:
        """Move the watermark forward to ``value`` (an ISO timestamp); never back (a late retry of an older
        attempt must not make the next run miss nothing, nor re-read everything). To re-read, delete it."""
        with self.engine.begin() as conn:
            current = conn.scalar(sa.select(Watermark.value).where(Watermark.flow == flow, Watermark.name == name))
            if current is not None and _earlier(value, current):
                return
            updated = conn.execute(sa.update(Watermark).where(Watermark.flow == flow, Watermark.name == name)
                                   .values(value=value, updated_at=utcnow())).rowcount
            if not updated:
                conn.execute(sa.insert(Watermark).values(flow=flow, name=name, value=value, updated_at=utcnow()))

    def snapshot_fingerprint(self, flow: str) -> tuple[int, int | None]:
        """(count, exact sum of the content hashes) of a flow's snapshot; the sum is None unless PostgreSQL.

        The hashes are 64-bit integers as decimal text (both the PostgreSQL and the pandas hashing path write
        them so); the same sum over the source tells whether anything changed there that was not read."""
        postgres = self.engine.dialect.name == "postgresql"
        flow_id = self._flow_id(flow, create=False)
        if flow_id is None:
            return 0, (0 if postgres else None)
        with self.engine.connect() as conn:
            if postgres:
                count, total = conn.execute(sa.text(
                    "SELECT count(*), coalesce(sum(CAST(content_hash AS bigint)), 0) FROM snapshots "
                    "WHERE flow_id = :flow_id"), {"flow_id": flow_id}).one()
                return int(count), int(total)
            return int(conn.scalar(sa.select(sa.func.count()).select_from(Snapshot)
                                   .where(Snapshot.flow_id == flow_id))), None

    def snapshot_hashes(self, flow: str, keys: Sequence[str]) -> dict[str, str]:
        """source_key -> acknowledged content hash, for these keys only (memory follows the batch)."""
        keys = list(keys)
        flow_id = self._flow_id(flow, create=False)
        if not keys or flow_id is None:
            return {}
        with self.engine.connect() as conn:
            if self._postgres and len(keys) > 2_000:
                # A big key list as one array parameter costs more to bind than COPY + join.
                import pyarrow as pa

                with conn.begin():
                    _copy_arrow(conn, "ledgerlink_keys", "source_key text",
                                pa.table({"source_key": _arrow_strings(keys)}))
                    return dict(conn.execute(sa.text(
                        "SELECT s.source_key, s.content_hash FROM snapshots s JOIN ledgerlink_keys k "
                        "ON s.source_key = k.source_key WHERE s.flow_id = :flow_id"), {"flow_id": flow_id}).all())
            if self._postgres:
                rows = conn.execute(sa.text("SELECT source_key, content_hash FROM snapshots "
                                            "WHERE flow_id = :flow_id AND source_key = ANY(:keys)"),
                                    {"flow_id": flow_id, "keys": keys})
                return dict(rows.all())
            found: dict[str, str] = {}
            for chunk in _chunks(keys, 900):
                found.update(conn.execute(sa.select(Snapshot.source_key, Snapshot.content_hash).where(
                    Snapshot.flow_id == flow_id, Snapshot.source_key.in_(chunk))).all())
            return found

    def snapshot_keys(self, flow: str) -> Iterator[str]:
        """Every acknowledged key of a flow, streamed."""
        flow_id = self._flow_id(flow, create=False)
        if flow_id is None:
            return
        with self.engine.connect().execution_options(stream_results=True, yield_per=50_000) as conn:
            for (key,) in conn.execute(sa.select(Snapshot.source_key).where(Snapshot.flow_id == flow_id)):
                yield key

    def refresh_statistics(self) -> None:
        """After a bulk write: PostgreSQL's planner learns the snapshot's new size now, not when autovacuum
        gets to it; with stale statistics the next night scans the whole snapshot to find 10,000 keys."""
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE snapshots, deliveries, chunks"))


def _move_snapshot(conn: sa.Connection, flow_id: int, rows: Sequence[tuple[str, str | None, str | None, str]],
                   now: datetime, chunk_id: int | None = None) -> None:
    """Snapshot after an acknowledgement: (source_key, content_hash, target_key, operation) rows; with
    ``chunk_id``, they are the lines that chunk delivered."""
    keys = [r[0] for r in rows]
    _keep_latest_deliveries(conn, flow_id, keys)
    conn.execute(sa.delete(Snapshot).where(Snapshot.flow_id == flow_id, Snapshot.source_key.in_(keys)))
    upserts = [{"flow_id": flow_id, "source_key": key, "content_hash": h, "target_key": tk, "acknowledged_at": now,
                "chunk_id": chunk_id, "operation": op if chunk_id is not None else None}
               for key, h, tk, op in rows if op != DELETE]
    if upserts:
        conn.execute(sa.insert(Snapshot), upserts)


def _keep_latest_deliveries(conn: sa.Connection, flow_id: int, keys: Sequence[str]) -> None:
    """Before the snapshot drops or replaces these keys' rows: those that are a line's latest delivery move
    to ``deliveries``, so the history keeps every delivery once."""
    conn.execute(sa.insert(deliveries).from_select(
        ["chunk_id", "source_key", "content_hash", "operation"],
        sa.select(Snapshot.chunk_id, Snapshot.source_key, Snapshot.content_hash, Snapshot.operation)
        .where(Snapshot.flow_id == flow_id, Snapshot.source_key.in_(keys), Snapshot.chunk_id.is_not(None))))


def _earlier(value: str, than: str) -> bool:
    """``value`` is a moment before ``than`` (False when either is not a timestamp: nothing to keep then)."""
    try:
        return moment(value) < moment(than)
    except ValueError:
        return False
