"""The ledger's PostgreSQL bulk paths (psycopg 3): the same statements' effect as the generic code, set-based.

Bulk item and snapshot writes go through COPY: a first load's lines straight into the snapshot, everything
else into a temporary table first, then joined. :class:`~ledgerlink.ledger.Ledger` takes these paths when its
engine is PostgreSQL with psycopg; the functions that take a connection run inside the caller's transaction.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa

from ledgerlink.ledger.models import ACKNOWLEDGED, DELETE, OPEN_STATUSES, PLANNED, SENT, Item, PlannedChange, utcnow


def _copy_rows(conn: sa.Connection, table: str, columns: str, rows: Iterable[tuple]) -> None:
    """A temporary table (dropped at commit) filled from Python tuples by COPY."""
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(f"CREATE TEMP TABLE {table} ({columns}) ON COMMIT DROP")
    with cursor.copy(f"COPY {table} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(f"ANALYZE {table}")


def _plan_postgres(engine: sa.Engine, run_id: str, flow: str, target: str, entity: str,
                   changes: Sequence[PlannedChange], now: datetime, sent: bool = False,
                   message_no: int | None = None) -> dict[str, int]:
    """:meth:`Ledger.plan` (``sent``: and ``mark_sent`` of every planned item, in the same statements)."""
    open_list = "('" + "', '".join(OPEN_STATUSES) + "')"
    with engine.begin() as conn:
        _copy_rows(conn, "ledgerlink_plan",
                   "source_key text, target_key text, content_hash text, operation text",
                   ((c.source_key, c.target_key, c.content_hash, c.operation) for c in changes))
        params = {"flow": flow, "run_id": run_id, "target": target, "entity": entity, "now": now,
                  "planned": PLANNED, "sent": SENT,
                  "message_no": message_no}
        # sent=True: the same rows as plan() followed by mark_sent() of every planned item
        also_sent = (", status = :sent, sent_at = :now, attempts = i.attempts + 1, message_no = :message_no"
                     if sent else "")
        # Superseding open items is close_superseded's job, once per run: a plan is often one chunk of it.
        conn.execute(sa.text(
            f"UPDATE items i SET run_id = :run_id, content_hash = p.content_hash, operation = p.operation, "
            f"target_key = p.target_key, updated_at = :now{also_sent} FROM ledgerlink_plan p "
            f"WHERE i.flow = :flow AND i.status IN {open_list} AND i.source_key = p.source_key"), params)
        conn.execute(sa.text(
            f"INSERT INTO items (run_id, flow, target, entity, source_key, target_key, content_hash, operation, "
            f"status, attempts, planned_at, updated_at, sent_at, message_no) "
            f"SELECT CAST(:run_id AS text), CAST(:flow AS text), CAST(:target AS text), CAST(:entity AS text), "
            f"p.source_key, p.target_key, p.content_hash, p.operation, CAST(:status AS text), "
            f"CAST(:attempts AS integer), CAST(:now AS timestamptz), CAST(:now AS timestamptz), "
            f"CAST(:sent_at AS timestamptz), CAST(:message_no AS bigint) FROM ledgerlink_plan p WHERE NOT EXISTS "
            f"(SELECT 1 FROM items i WHERE i.flow = CAST(:flow AS text) AND i.status IN {open_list} "
            f"AND i.source_key = p.source_key)"),
            {**params, "status": SENT if sent else PLANNED, "attempts": 1 if sent else 0,
             "sent_at": now if sent else None, "message_no": message_no if sent else None})
        return {key: item_id for key, item_id in conn.execute(
            sa.select(Item.source_key, Item.id).where(Item.flow == flow, Item.status.in_(OPEN_STATUSES)))}


def _acknowledge_postgres(engine: sa.Engine, flow_id: int, acknowledged, now: datetime) -> None:
    """:meth:`Ledger.acknowledge`: close the items and move the snapshot, in one transaction."""
    with engine.begin() as conn:
        _copy_rows(conn, "ledgerlink_ack",
                   "item_id bigint, source_key text, content_hash text, target_key text, operation text",
                   acknowledged)
        conn.execute(sa.text(
            "UPDATE items i SET status = :acknowledged, acknowledged_at = :now, updated_at = :now, "
            "last_error = NULL, target_key = a.target_key FROM ledgerlink_ack a WHERE i.id = a.item_id"),
            {"now": now, "acknowledged": ACKNOWLEDGED})
        _replace_snapshot_rows(conn, "ledgerlink_ack", flow_id, now, distinct=True, with_target_key=True)


def _arrow_strings(values):
    """A string column for Arrow from a list, a NumPy array or a pandas Series (Arrow-backed ones zero-copy)."""
    import pyarrow as pa

    if hasattr(values, "array") and hasattr(values.array, "__arrow_array__"):
        return pa.array(values.array, type=pa.string())
    return pa.array(values, type=pa.string(), from_pandas=True)


def _replace_snapshot_rows(conn: sa.Connection, table: str, flow_id: int, now: datetime, *, distinct: bool = False,
                           has_operation: bool = True, with_target_key: bool = False,
                           chunk_id: int | None = None) -> None:
    """The snapshot rows of the keys in ``table`` (a temporary table with columns source_key, content_hash
    [, target_key][, operation]) become its rows: old ones deleted (a line's latest delivery among them
    kept in ``deliveries``), rows with operation 'delete' left out. ``chunk_id``: the rows are the lines
    that chunk delivered. ``distinct``: the table may hold a key twice (the first wins); a chunk's keys are
    unique, so it needs no sort.
    """
    params = {"flow_id": flow_id, "now": now, "delete": DELETE, "chunk": chunk_id}
    conn.execute(sa.text(  # a row matched twice (``distinct``) is still deleted, and returned, once
        f"WITH replaced AS (DELETE FROM snapshots s USING {table} t WHERE s.flow_id = :flow_id AND s.source_key = "
        f"t.source_key RETURNING s.chunk_id, s.source_key, s.content_hash, s.operation) "
        f"INSERT INTO deliveries (chunk_id, source_key, content_hash, operation) "
        f"SELECT chunk_id, source_key, content_hash, operation FROM replaced WHERE chunk_id IS NOT NULL"),
        params)
    target_key = ", target_key" if with_target_key else ""
    delivered = "CAST(:chunk AS bigint), operation" if chunk_id is not None else "NULL, NULL"
    conn.execute(sa.text(
        f"INSERT INTO snapshots (flow_id, source_key, content_hash{target_key}, acknowledged_at, chunk_id, "
        f"operation) SELECT {'DISTINCT ON (source_key) ' if distinct else ''}CAST(:flow_id AS smallint), source_key, "
        f"content_hash{target_key}, CAST(:now AS timestamptz), {delivered} FROM {table} t"
        f"{' WHERE operation <> :delete' if has_operation else ''}"), params)


def _write_lines_postgres(conn: sa.Connection, flow_id: int, chunk_id: int, keys, hashes, operations,
                          expect_new: bool) -> None:
    """A chunk's lines into the snapshot, each its line's latest delivery; the deliveries they supersede and
    the chunk's deletions into ``deliveries``. Inside the caller's transaction (not committed)."""
    import psycopg
    import pyarrow as pa
    import pyarrow.compute as pc

    from ledgerlink.copyio import copy_arrow

    lines = pa.table({"source_key": _arrow_strings(keys), "content_hash": _arrow_strings(hashes),
                      "operation": _arrow_strings(operations)})
    if expect_new and pc.any(pc.equal(lines["operation"], DELETE)).as_py():
        expect_new = False  # only creations go straight in: a deletion is a row in deliveries, not the snapshot
    if expect_new:
        # A first load COPies straight into the snapshot: one write per line, none into deliveries (1M lines:
        # 2.7 s of the ledger server's time, against 3.6 s through deliveries and back). acknowledged_at is
        # the column's default, the transaction's start.
        rows = lines.append_column("flow_id", pa.repeat(pa.scalar(flow_id, pa.int16()), len(lines))).append_column(
            "chunk_id", pa.repeat(pa.scalar(chunk_id, pa.int64()), len(lines)))
        try:
            with conn.begin_nested():
                copy_arrow(conn.connection.driver_connection.cursor(), "COPY snapshots (source_key, content_hash, "
                           "operation, flow_id, chunk_id) FROM STDIN WITH (FORMAT csv)", rows)
            return
        except psycopg.errors.UniqueViolation:
            pass  # a key was in the snapshot after all: replace rows instead
    # Replacing rows: a temporary table with exact statistics lets the planner probe the snapshot by key for a
    # night's few thousand lines.
    _copy_arrow(conn, "ledgerlink_ack", "source_key text, content_hash text, operation text", lines)
    conn.execute(sa.text("INSERT INTO deliveries (chunk_id, source_key, content_hash, operation) "
                         "SELECT CAST(:chunk AS bigint), source_key, content_hash, operation FROM ledgerlink_ack "
                         "WHERE operation = :delete"), {"chunk": chunk_id, "delete": DELETE})
    _replace_snapshot_rows(conn, "ledgerlink_ack", flow_id, utcnow(), chunk_id=chunk_id)


def _copy_arrow(conn: sa.Connection, table: str, columns: str, rows) -> None:
    """A temporary table (dropped at commit) filled from an Arrow table by COPY, its CSV written by Arrow."""
    from ledgerlink.copyio import copy_arrow

    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(f"CREATE TEMP TABLE {table} ({columns}) ON COMMIT DROP")
    copy_arrow(cursor, f"COPY {table} FROM STDIN WITH (FORMAT csv)", rows)
    cursor.execute(f"ANALYZE {table}")

