"""The ledger's tables and the words its rows use: item statuses and operations, run statuses.

The schema itself is migrated by Alembic (:mod:`ledgerlink.migrations`); these models are what its head
revision builds.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy import orm

PLANNED, SENT, ACKNOWLEDGED, REJECTED, QUARANTINED = "planned", "sent", "acknowledged", "rejected", "quarantined"
OPEN_STATUSES = (PLANNED, SENT)
CREATE, UPDATE, DELETE = "create", "update", "delete"
UPSERT = "upsert"  # a chunk of lines, each created or updated
SUPERSEDED = "superseded: no longer differs from the target"
# A run's status: running until its last task closes it; blocked when its gate stopped it; abandoned when it
# stopped without a word (killed) and a later run took over.
RUNNING, SUCCEEDED, FAILED, BLOCKED, ABANDONED = "running", "succeeded", "failed", "blocked", "abandoned"
LEASE_DURATION = timedelta(hours=6)  # longer than any run; a killed run's lease lapses after it


class LedgerPart:
    """What the ledger's parts (runs, snapshots, items) share: the engine ``Ledger`` sets, and reading rows."""

    engine: sa.Engine

    def _dicts(self, query) -> list[dict]:
        """The query's rows as dicts (column name -> value)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


class Base(orm.DeclarativeBase):
    pass


def serial_id() -> orm.MappedColumn:
    """A surrogate key: BIGINT on PostgreSQL (a table of lines outgrows int4), INTEGER on SQLite, whose INTEGER
    PRIMARY KEY is the rowid and the only type it autoincrements."""
    return orm.mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)


class Run(Base):
    __tablename__ = "runs"
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250), primary_key=True)
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100), primary_key=True)
    started_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    finished_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))
    status: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    summary: orm.Mapped[str | None] = orm.mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_runs_started_at", "started_at"),)  # the ledger page's runs, newest first


class Item(Base):
    __tablename__ = "items"
    id: orm.Mapped[int] = serial_id()
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250), index=True)
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    target: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    entity: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    source_key: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    target_key: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    content_hash: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    operation: orm.Mapped[str] = orm.mapped_column(sa.String(10))
    status: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    message_no: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger)
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    planned_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    sent_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))
    acknowledged_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    # What the target answered to the write (revision onec_documents_item_versions): the version it gave the
    # record (1C's DataVersion; the conflict policy target_edits_held compares it), and the request that carried it.
    target_version: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    request: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))

    __table_args__ = (
        sa.Index("ix_items_flow_key", "flow", "source_key"),
        sa.Index("ix_items_target_planned", "target", "planned_at"),
        # The ledger page (revision ledger_page_indexes): "where is X" across flows, the open items in order.
        sa.Index("ix_items_source_key", "source_key"),
        sa.Index("ix_items_status_id", "status", "id"),
        # At most one open (planned or sent) item per record and flow: a retry continues it.
        sa.Index("ux_items_open", "flow", "source_key", unique=True,
                 sqlite_where=sa.text("status IN ('planned', 'sent')"),
                 postgresql_where=sa.text("status IN ('planned', 'sent')")),
    )


class Chunk(Base):
    """One chunk of lines of a chunked (SQL) load: planned, sent while the target's transaction runs,
    acknowledged in the ledger transaction that records its lines, or rejected. Its lines are never items:
    each is written once, acknowledged, into the snapshot (and ``deliveries``) under the chunk's id.

    ``chunk_index`` is the chunk's place in its run (0, 1, ...; -1 is the run's deletions): a retry of the run
    continues the chunk of the same index (``attempts`` counts the sends). Revision 0005 moved the chunks that
    were rows of ``items`` here, keeping their ids; one whose index its old key did not give (or that another
    chunk of its run already had) has none, which the unique index lets repeat. ``lines``: how many lines the
    chunk's last send carried.
    """

    __tablename__ = "chunks"
    id: orm.Mapped[int] = serial_id()
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250))
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    target: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    entity: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    chunk_index: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    operation: orm.Mapped[str] = orm.mapped_column(sa.String(10))  # upsert, or delete (the run's deletions)
    lines: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    planned_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    sent_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))
    acknowledged_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ux_chunks_run_index", "flow", "run_id", "chunk_index", unique=True),
        sa.Index("ix_chunks_updated_at", "updated_at"),  # the history, by time
    )


class Flow(Base):
    """A flow's short id: the snapshot names its flow by it (two bytes in every row and index entry of a
    table that holds a million lines per flow, instead of the flow's name)."""

    __tablename__ = "flows"
    id: orm.Mapped[int] = orm.mapped_column(sa.SmallInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                            autoincrement=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100), unique=True)


class Snapshot(Base):
    """Last content each target acknowledged, per record: what change tracking diffs against.

    For a line of a chunked (SQL) load the row is also that line's latest delivery: ``chunk_id`` names the
    chunk (``chunks.id``) that delivered it and ``operation`` what it did (schema 3; named ``chunk_item_id``
    until revision 0005, when chunks were rows of ``items``). Rows without a chunk (per-item flows, whose
    items are their history; derived state; lines recorded before schema 3, whose deliveries are all in
    ``deliveries``) are not deliveries.
    """

    __tablename__ = "snapshots"
    flow_id: orm.Mapped[int] = orm.mapped_column(sa.SmallInteger, primary_key=True)  # flows.id
    source_key: orm.Mapped[str] = orm.mapped_column(sa.String(200), primary_key=True)
    content_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    target_key: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    # A first load COPies its lines without a time each (parsing a timestamp a line cost a fifth more): they get
    # the ledger transaction's start, a moment before the target's commit; the chunk carries the
    # acknowledgement's own time. SQLite's writes always give it.
    acknowledged_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True),
                                                              server_default=sa.text("CURRENT_TIMESTAMP"))
    chunk_id: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger)
    operation: orm.Mapped[str | None] = orm.mapped_column(sa.String(10))


class Watermark(Base):
    __tablename__ = "watermarks"
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100), primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100), primary_key=True)
    value: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    updated_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))


class QuarantinedRow(Base):
    __tablename__ = "quarantine"
    id: orm.Mapped[int] = serial_id()
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250), index=True)
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    entity: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    source_key: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    reasons: orm.Mapped[str] = orm.mapped_column(sa.Text)
    row: orm.Mapped[str] = orm.mapped_column(sa.Text)
    created_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_quarantine_source_key", "source_key"),)  # the ledger page: "where is X"


class Validation(Base):
    __tablename__ = "validations"
    id: orm.Mapped[int] = serial_id()
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250), index=True)
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    entity: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    success: orm.Mapped[bool] = orm.mapped_column(sa.Boolean)
    rows: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    failed_blocking: orm.Mapped[str] = orm.mapped_column(sa.Text)
    failed_warning: orm.Mapped[str] = orm.mapped_column(sa.Text)
    report_html: orm.Mapped[str] = orm.mapped_column(sa.Text)
    report_json: orm.Mapped[str] = orm.mapped_column(sa.Text)
    created_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))


# The per-line history of chunked loads, but for each line's latest delivery, which is its snapshot row
# (schema 3): a line delivery that is superseded (the line changed, was deleted or forgotten) moves here, and
# deletions are written here. A chunk of lines is in flight as one ``chunks`` row (which names the run, flow,
# target and time); its lines are written, acknowledged, in the transaction that closes that chunk. A first
# load thus writes each line once, into the snapshot, and this table grows by a night's changes: B-tree
# indexes by chunk (``lines --run``) and by key (``lines --key``) cost little. (Up to schema 2 every delivery
# came here, in chunk order, under a BRIN index.) Append-only, four narrow columns.
deliveries = sa.Table(
    "deliveries", Base.metadata,
    sa.Column("chunk_id", sa.BigInteger, nullable=False),  # chunks.id (chunk_item_id before revision 0005)
    sa.Column("source_key", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("operation", sa.String(10), nullable=False),
    sa.Index("ix_deliveries_chunk", "chunk_id"),
    sa.Index("ix_deliveries_source_key", "source_key"),
)


class FlowLease(Base):
    """One run per flow at a time: the run holding a flow's lease is the only one that may change its target or
    its ledger state. Held from extract to the run's end (every task renews it); it expires so that a run killed
    before any callback could release it does not block the flow forever."""

    __tablename__ = "flow_leases"
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100), primary_key=True)
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250))
    acquired_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    expires_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))


class SchemaVersion(Base):
    """The versions the hand-written runner before Alembic applied (1 to 4; revisions 0001 to 0004 still write
    theirs). Kept for the ledgers it built: ``ledgerlink migrate`` stamps them from it. See
    :mod:`ledgerlink.migrations`."""

    __tablename__ = "ledger_schema_version"
    version: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
    description: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    applied_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))


@dataclass(frozen=True)
class PlannedChange:
    """One change about to be sent: what :meth:`~ledgerlink.ledger.Ledger.plan` records as an item."""

    source_key: str
    target_key: str | None
    content_hash: str | None
    operation: str


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
