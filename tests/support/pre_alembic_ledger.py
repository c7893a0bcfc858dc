"""A ledger as the hand-written migration runner before Alembic built it (``Ledger.migrate`` up to commit
3f1ecd3): its tables, its runner and its ``ledger_schema_version`` rows, frozen here so that the upgrade
tests start from what that code left, whatever the models become.

On an empty database that runner created the models of its day in migration 1 (schema 3's snapshot
included), so its migration 3 only added ``flows``; the snapshot rewrite it also carried (for ledgers that
were at schema 2) is exercised from :func:`tests.support.ledger_history.downgrade_to_schema_2`.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import sqlalchemy as sa

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_WHEN = sa.DateTime(timezone=True)

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("flow", sa.String(100), primary_key=True),
    sa.Column("started_at", _WHEN, nullable=False),
    sa.Column("finished_at", _WHEN),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("summary", sa.Text),
)
items = sa.Table(
    "items", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False, index=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("target", sa.String(50), nullable=False),
    sa.Column("entity", sa.String(50), nullable=False),
    sa.Column("source_key", sa.String(200), nullable=False),
    sa.Column("target_key", sa.String(200)),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("operation", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message_no", sa.BigInteger),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("planned_at", _WHEN, nullable=False),
    sa.Column("sent_at", _WHEN),
    sa.Column("acknowledged_at", _WHEN),
    sa.Column("updated_at", _WHEN, nullable=False),
    sa.Index("ix_items_flow_key", "flow", "source_key"),
    sa.Index("ix_items_target_planned", "target", "planned_at"),
    sa.Index("ux_items_open", "flow", "source_key", unique=True,
             sqlite_where=sa.text("status IN ('planned', 'sent')"),
             postgresql_where=sa.text("status IN ('planned', 'sent')")),
)
flows = sa.Table(
    "flows", metadata,
    sa.Column("id", sa.SmallInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
)
snapshots = sa.Table(
    "snapshots", metadata,
    sa.Column("flow_id", sa.SmallInteger, primary_key=True),
    sa.Column("source_key", sa.String(200), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("target_key", sa.String(200)),
    sa.Column("acknowledged_at", _WHEN, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
    sa.Column("chunk_item_id", sa.BigInteger),
    sa.Column("operation", sa.String(10)),
)
watermarks = sa.Table(
    "watermarks", metadata,
    sa.Column("flow", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(100), nullable=False),
    sa.Column("updated_at", _WHEN, nullable=False),
)
quarantine = sa.Table(
    "quarantine", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False, index=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("entity", sa.String(50), nullable=False),
    sa.Column("source_key", sa.String(200), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("row", sa.Text, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
)
validations = sa.Table(
    "validations", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False, index=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("entity", sa.String(50), nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("failed_blocking", sa.Text, nullable=False),
    sa.Column("failed_warning", sa.Text, nullable=False),
    sa.Column("report_html", sa.Text, nullable=False),
    sa.Column("report_json", sa.Text, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
)
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("chunk_item_id", sa.BigInteger, nullable=False),
    sa.Column("source_key", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("operation", sa.String(10), nullable=False),
    sa.Index("ix_deliveries_chunk", "chunk_item_id"),
    sa.Index("ix_deliveries_source_key", "source_key"),
)
flow_leases = sa.Table(
    "flow_leases", metadata,
    sa.Column("flow", sa.String(100), primary_key=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("acquired_at", _WHEN, nullable=False),
    sa.Column("expires_at", _WHEN, nullable=False),
)
schema_version = sa.Table(
    "ledger_schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", _WHEN, nullable=False),
)


def chunk_key(run_id: str, index: int) -> str:
    """The key the code up to revision 0004 gave a chunk's item (``ledgerlink.delivery.chunk_key`` of that time):
    the run's hash, and the chunk's index or "deletions"."""
    run = hashlib.sha1(run_id.encode()).hexdigest()[:12]
    return f"chunk {'deletions' if index < 0 else f'{index:04d}'} of run {run}"


def _migration_1_initial(connection: sa.Connection) -> None:
    metadata.create_all(connection, tables=[runs, items, snapshots, watermarks, quarantine, validations])


def _migration_2_deliveries(connection: sa.Connection) -> None:
    deliveries.create(connection, checkfirst=True)


def _migration_3_flows(connection: sa.Connection) -> None:
    """Migration 3 as it ran on a ledger its migration 1 had created (the snapshot has ``flow_id``)."""
    flows.create(connection, checkfirst=True)
    connection.execute(sa.text("DROP INDEX IF EXISTS ix_deliveries_chunk_item"))
    for index in deliveries.indexes:
        index.create(connection, checkfirst=True)
    assert "flow_id" in {column["name"] for column in sa.inspect(connection).get_columns("snapshots")}


def _migration_4_flow_leases(connection: sa.Connection) -> None:
    flow_leases.create(connection, checkfirst=True)


MIGRATIONS = [
    (1, "runs, items, snapshots, watermarks, quarantine, validations", _migration_1_initial),
    (2, "deliveries: per-line history of chunked loads, append-only", _migration_2_deliveries),
    (3, "flows; snapshots name their flow by id and hold each chunked line's latest delivery; "
        "deliveries indexed by chunk and key", _migration_3_flows),
    (4, "flow_leases: one run per flow at a time", _migration_4_flow_leases),
]


def build(url: str, up_to: int = 4) -> None:
    """An empty database migrated by the runner to version ``up_to`` (4: the code before Alembic; 3: before
    the flow lease)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema_version.create(conn, checkfirst=True)
        done = set(conn.scalars(sa.select(schema_version.c.version)))
        for version, description, apply in MIGRATIONS[:up_to]:
            if version not in done:
                apply(conn)
                conn.execute(sa.insert(schema_version).values(version=version, description=description,
                                                              applied_at=datetime.now(timezone.utc)))
    engine.dispose()


def fill(url: str) -> None:
    """Rows in every table, as that code's runs would have left them."""
    when = datetime(2026, 11, 1, 2, 30, tzinfo=timezone.utc)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(runs), [
            {"run_id": "r1", "flow": "lines", "started_at": when, "finished_at": when, "status": "succeeded",
             "summary": '{"sent": 3}'},
            {"run_id": "r2", "flow": "customers", "started_at": when, "finished_at": None, "status": "running",
             "summary": None}])
        conn.execute(sa.insert(items), [
            {"run_id": "r1", "flow": "lines", "target": "erp", "entity": "invoice_line", "source_key": "chunk 1",
             "target_key": None, "content_hash": "3 lines", "operation": "upsert", "status": "acknowledged",
             "message_no": None, "attempts": 1, "last_error": None, "planned_at": when, "sent_at": when,
             "acknowledged_at": when, "updated_at": when},
            {"run_id": "r2", "flow": "customers", "target": "onec", "entity": "customer", "source_key": "C1",
             "target_key": "ref-1", "content_hash": "h1", "operation": "create", "status": "sent",
             "message_no": 7, "attempts": 2, "last_error": "timeout", "planned_at": when, "sent_at": when,
             "acknowledged_at": None, "updated_at": when}])
        conn.execute(sa.insert(flows), [{"name": "customers"}, {"name": "lines"}])
        ids = dict(conn.execute(sa.select(flows.c.name, flows.c.id)).all())
        conn.execute(sa.insert(snapshots), [
            {"flow_id": ids["lines"], "source_key": f"L{i}", "content_hash": str(i), "target_key": None,
             "acknowledged_at": when, "chunk_item_id": 1, "operation": "create"} for i in range(3)] + [
            {"flow_id": ids["customers"], "source_key": "C0", "content_hash": "h0", "target_key": "ref-0",
             "acknowledged_at": when, "chunk_item_id": None, "operation": None}])
        conn.execute(sa.insert(deliveries), [
            {"chunk_item_id": 1, "source_key": "L9", "content_hash": None, "operation": "delete"}])
        conn.execute(sa.insert(watermarks), [
            {"flow": "customers", "name": "updated_at", "value": "2026-10-31T00:00:00", "updated_at": when}])
        conn.execute(sa.insert(quarantine), [
            {"run_id": "r2", "flow": "customers", "entity": "customer", "source_key": "C3",
             "reasons": "email looks like an address", "row": '{"id": "C3"}', "created_at": when}])
        conn.execute(sa.insert(validations), [
            {"run_id": "r2", "flow": "customers", "entity": "customer", "success": False, "rows": 4,
             "failed_blocking": "[]", "failed_warning": '["email"]', "report_html": "<html/>",
             "report_json": "{}", "created_at": when}])
        if sa.inspect(conn).has_table("flow_leases"):
            conn.execute(sa.insert(flow_leases), [
                {"flow": "customers", "run_id": "r2", "acquired_at": when, "expires_at": when}])
    engine.dispose()


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, sorted, as text (so SQLite's and PostgreSQL's values compare alike)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = sorted(sa.inspect(conn).get_table_names())
        found = {name: sorted(tuple(map(str, row)) for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')))
                 for name in names}
    engine.dispose()
    return found
