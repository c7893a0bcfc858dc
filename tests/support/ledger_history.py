"""Ledger history scenarios run on both ledger databases (SQLite in unit tests, PostgreSQL in integration)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from ledgerlink.errors import ConfigurationError
from ledgerlink.ledger import Base, Ledger, PlannedChange
from ledgerlink.migrations import LEGACY_REVISIONS, VERSION_TABLE, head, migrate, require_head
from tests.support import pre_alembic_ledger

FLOW = "lines"


def _chunk(ledger: Ledger, index: int, lines: int = 2) -> int:
    return ledger.plan_chunk("run", FLOW, "erp", "invoice_line", index, "upsert", lines, sent=True)


def _history(ledger: Ledger, **filters) -> list[tuple]:
    return [(d["chunk_id"], d["source_key"], d["content_hash"], d["operation"])
            for d in ledger.deliveries(flow=FLOW, **filters)]


def check_every_delivery_is_listed_once(ledger: Ledger) -> None:
    """A first load's lines go into the snapshot only, each its line's latest delivery; a later change moves
    the delivery it supersedes into ``deliveries``, a deletion is written there, and forgetting a line keeps
    its delivery."""
    first = _chunk(ledger, 0, lines=5)
    ledger.record_confirmed_lines(FLOW, first, [f"L{i}" for i in range(5)], [str(i) for i in range(5)],
                                  ["create"] * 5, expect_new=True)
    with ledger.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM deliveries")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM snapshots WHERE chunk_id = :c"), {"c": first}) == 5
    second = _chunk(ledger, 1, lines=3)
    ledger.record_confirmed_lines(FLOW, second, ["L1", "L2", "L9"], ["10", None, "9"], ["update", "delete", "create"])
    ledger.forget(FLOW, ["L3"])
    assert _history(ledger) == [
        (first, "L0", "0", "create"), (first, "L1", "1", "create"), (first, "L2", "2", "create"),
        (first, "L3", "3", "create"), (first, "L4", "4", "create"),
        (second, "L1", "10", "update"), (second, "L2", None, "delete"), (second, "L9", "9", "create")]
    assert _history(ledger, key="L1") == [(first, "L1", "1", "create"), (second, "L1", "10", "update")]
    assert _history(ledger, run_id="elsewhere") == []
    assert ledger.deliveries(flow="no such flow") == []
    assert ledger.snapshot_hashes(FLOW, ["L0", "L1", "L2", "L3", "L9"]) == {"L0": "0", "L1": "10", "L9": "9"}

    # Derived state or a per-item acknowledgement written over a line's row: that delivery is kept too.
    ledger.put_snapshot(FLOW, ["L0"], ["derived"])
    item = ledger.plan_and_mark_sent("run", FLOW, "erp", "invoice_line", [PlannedChange("L4", "t4", "44", "update")])
    ledger.acknowledge(FLOW, [(item["L4"], "L4", "44", "t4", "update")])
    assert len(_history(ledger)) == 8 and _history(ledger, key="L0") == [(first, "L0", "0", "create")]
    assert ledger.snapshot(FLOW)["L0"] == ("derived", None) and ledger.snapshot(FLOW)["L4"] == ("44", "t4")
    assert [(c["id"], c["chunk_index"], c["lines"], c["status"], c["attempts"]) for c in ledger.chunks(flow=FLOW)] == [
        (first, 0, 5, "acknowledged", 1), (second, 1, 3, "acknowledged", 1)]
    assert [i["source_key"] for i in ledger.items(flow=FLOW)] == ["L4"], "lines and chunks are never items"


def schema_differences(url: str) -> list:
    """What Alembic's autogenerate finds between the ledger at ``url`` and the models (tables, columns, types,
    nullability, server defaults, indexes, unique constraints): [] when they agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                         "compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    return differences


def check_a_fresh_ledger_migrates_to_exactly_the_models(url: str) -> None:
    """An empty database: ``migrate`` takes it from nothing to head, its schema is the models' own, and a
    second ``migrate`` does nothing."""
    first = migrate(url)
    assert (first.before, first.stamped, first.after, first.changed) == (None, None, head(), True)
    assert schema_differences(url) == []
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")) == head()
        assert sorted(conn.scalars(sa.text("SELECT version FROM ledger_schema_version"))) == [1, 2, 3, 4]
    engine.dispose()
    rows = pre_alembic_ledger.dump(url)
    second = migrate(url)
    assert (second.before, second.stamped, second.after, second.changed) == (head(), None, head(), False)
    assert pre_alembic_ledger.dump(url) == rows


# Tables of revisions after 0004, which no ledger built before Alembic has.
LATER_TABLES = ("usage_files", "einvoice_series", "einvoices", "einvoice_attempts")
# Columns later revisions add to items (onec_documents_item_versions), last in each row and empty on old rows.
LATER_ITEM_COLUMNS = ("target_version", "request")


def without_later_item_columns(dump: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """A dump's items rows without the columns later revisions added, which must be empty on every old row."""
    cut = len(LATER_ITEM_COLUMNS)
    rows = dump.get("items", [])
    assert all(row[-cut:] == ("None",) * cut for row in rows), "an old item got a value in a column added later"
    return {**dump, "items": [row[:-cut] for row in rows]} if "items" in dump else dump


def check_a_ledger_built_before_alembic_upgrades_keeping_every_row(url: str, version: int) -> None:
    """A ledger the runner before Alembic built to ``version`` (no Alembic table), with rows in every table:
    ``migrate`` stamps the matching revision, upgrades to head, keeps every row, and ends at the models' schema.
    ``Ledger`` refuses it before, and reads it after."""
    pre_alembic_ledger.build(url, up_to=version)
    pre_alembic_ledger.fill(url)
    before = pre_alembic_ledger.dump(url)
    with pytest.raises(ConfigurationError, match=r"created before Alembic.*run `ledgerlink migrate`"):
        Ledger(url)

    done = migrate(url)
    assert (done.before, done.legacy_version, done.stamped, done.after) == (
        None, version, LEGACY_REVISIONS[version], head())
    after = without_later_item_columns(pre_alembic_ledger.dump(url))
    assert after.pop(VERSION_TABLE) == [(head(),)]
    versions_before, versions_after = before.pop("ledger_schema_version"), after.pop("ledger_schema_version")
    assert versions_after[:len(versions_before)] == versions_before  # kept, with their times
    assert [int(row[0]) for row in versions_after] == [1, 2, 3, 4]
    before.setdefault("flow_leases", [])  # version 3 had none; 0004 creates it
    chunk_items = [row for row in before["items"] if row[5] == "chunk 1"]  # its lines name it; its key no index
    before["items"] = [row for row in before["items"] if row not in chunk_items]
    assert after.pop("chunks") == [as_chunk_row(row, None, 3) for row in chunk_items]
    for table in LATER_TABLES:  # created, empty, by the revisions after the runner's last version
        before.setdefault(table, [])
    assert after == before
    assert schema_differences(url) == []
    ledger = Ledger(url)
    assert ledger.snapshot("customers") == {"C0": ("h0", "ref-0")}
    assert ledger.snapshot_hashes("lines", ["L0", "L1", "L2"]) == {"L0": "0", "L1": "1", "L2": "2"}
    assert [d["source_key"] for d in ledger.deliveries(flow="lines")] == ["L0", "L1", "L2", "L9"]
    assert [(c["run_id"], c["chunk_index"], c["lines"], c["status"]) for c in ledger.chunks()] == [
        ("r1", None, 3, "acknowledged")]
    ledger.engine.dispose()
    again = migrate(url)
    assert (again.before, again.stamped, again.after, again.changed) == (head(), None, head(), False)


def as_chunk_row(item: tuple, index: int | None, lines: int) -> tuple:
    """A chunk item's row of ``items`` (as :func:`pre_alembic_ledger.dump` gives it) as revision 0005 moves it
    into ``chunks``: its id, run, flow, target, entity, operation, status, attempts, error and times kept."""
    (item_id, run_id, flow, target, entity, _key, _target_key, _hash, operation, status, _message_no, attempts,
     last_error, planned_at, sent_at, acknowledged_at, updated_at) = item
    return (item_id, run_id, flow, target, entity, str(index), operation, str(lines), status, attempts, last_error,
            planned_at, sent_at, acknowledged_at, updated_at)


def legacy_chunk_item(ledger: Ledger, run_id: str, index: int, lines: int, operation: str = "upsert") -> int:
    """A chunk as the code up to revision 0004 kept it: an item with a made-up key and "N lines"."""
    key = pre_alembic_ledger.chunk_key(run_id, index)
    return ledger.plan_and_mark_sent(run_id, FLOW, "erp", "invoice_line",
                                     [PlannedChange(key, None, f"{lines} lines", operation)])[key]


def downgrade_to_schema_2(ledger: Ledger) -> None:
    """The snapshot and deliveries tables as schema 2 had them (empty), schema 3 not yet applied, and the
    ledger as the runner before Alembic left it: no flow lease, no chunks table, no Alembic version table."""
    postgres = ledger.engine.dialect.name == "postgresql"
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE chunks"))
        conn.execute(sa.text("ALTER TABLE deliveries RENAME COLUMN chunk_id TO chunk_item_id"))
        conn.execute(sa.text("DROP TABLE snapshots"))
        conn.execute(sa.text("DROP TABLE flows"))
        conn.execute(sa.text("DROP TABLE flow_leases"))
        for table in LATER_TABLES:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        for column in LATER_ITEM_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE items DROP COLUMN {column}"))
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(sa.text(f"CREATE TABLE snapshots (flow VARCHAR(100) NOT NULL, source_key VARCHAR(200) NOT NULL, "
                             f"content_hash VARCHAR(64) NOT NULL, target_key VARCHAR(200), acknowledged_at "
                             f"{'TIMESTAMP WITH TIME ZONE' if postgres else 'DATETIME'} NOT NULL, "
                             f"PRIMARY KEY (flow, source_key))"))
        conn.execute(sa.text("DROP INDEX ix_deliveries_chunk"))
        conn.execute(sa.text("DROP INDEX ix_deliveries_source_key"))
        conn.execute(sa.text(f"CREATE INDEX ix_deliveries_chunk_item ON deliveries "
                             f"{'USING brin ' if postgres else ''}(chunk_item_id)"))
        conn.execute(sa.text("DELETE FROM ledger_schema_version WHERE version IN (3, 4)"))


def check_a_schema_2_ledger_upgrades_without_listing_a_delivery_twice(url: str) -> None:
    """Under schema 2 every delivery was written to ``deliveries``, the snapshot kept no chunk. After the
    upgrade (``migrate`` stamps 0002 and runs 0003 and 0004) those rows stay where they are; new deliveries
    follow the new rule; nothing is listed twice."""
    ledger = Ledger.migrated(url)
    downgrade_to_schema_2(ledger)
    old = legacy_chunk_item(ledger, "a run under schema 2", 0, 2)
    with ledger.engine.begin() as conn:  # what schema 2's code wrote for a chunk of two lines
        conn.execute(sa.text("INSERT INTO deliveries (chunk_item_id, source_key, content_hash, operation) "
                             "VALUES (:c, 'L1', '1', 'create'), (:c, 'L2', '2', 'create')"), {"c": old})
        conn.execute(sa.text("INSERT INTO snapshots (flow, source_key, content_hash, acknowledged_at) "
                             "VALUES (:f, 'L1', '1', :now), (:f, 'L2', '2', :now), ('customers', 'C1', 'h', :now)"),
                     {"f": FLOW, "now": datetime(2026, 11, 1, tzinfo=timezone.utc)})
    ledger.engine.dispose()
    before = pre_alembic_ledger.dump(url)

    done = migrate(url)
    assert (done.before, done.legacy_version, done.stamped, done.after) == (None, 2, "0002", head())
    after = pre_alembic_ledger.dump(url)
    assert after[VERSION_TABLE] == [(head(),)]
    for table in ("runs", "deliveries", "watermarks", "quarantine", "validations"):
        assert after[table] == before[table], table  # untouched; the snapshot's rows are checked below
    assert after["items"] == [] and after["chunks"] == [as_chunk_row(row, 0, 2) for row in before["items"]]
    assert len(after["snapshots"]) == len(before["snapshots"]) == 3
    assert [int(row[0]) for row in after["ledger_schema_version"]] == [1, 2, 3, 4]
    assert schema_differences(url) == []
    upgraded = Ledger(url)
    require_head(upgraded.engine)  # this process saw the URL at head before the downgrade: check it again
    inspector = sa.inspect(upgraded.engine)
    assert {"flow_id", "chunk_id", "operation"} <= {c["name"] for c in inspector.get_columns("snapshots")}
    assert "flow" not in {c["name"] for c in inspector.get_columns("snapshots")}
    assert inspector.get_pk_constraint("snapshots")["constrained_columns"] == ["flow_id", "source_key"]
    assert {i["name"] for i in inspector.get_indexes("deliveries")} == {"ix_deliveries_chunk", "ix_deliveries_source_key"}
    update = _chunk(upgraded, 0)
    upgraded.record_confirmed_lines(FLOW, update, ["L1"], ["10"], ["update"])
    first_load = _chunk(upgraded, 1)  # COPied into the snapshot: acknowledged_at from its default
    upgraded.record_confirmed_lines(FLOW, first_load, ["L5"], ["5"], ["create"], expect_new=True)
    assert _history(upgraded) == [(old, "L1", "1", "create"), (old, "L2", "2", "create"),
                                  (update, "L1", "10", "update"), (first_load, "L5", "5", "create")]
    assert upgraded.snapshot_hashes(FLOW, ["L1", "L2", "L5"]) == {"L1": "10", "L2": "2", "L5": "5"}
    assert upgraded.snapshot("customers") == {"C1": ("h", None)}  # every flow's rows came across
    assert upgraded.snapshot_fingerprint(FLOW)[0] == 3
    upgraded.engine.dispose()


def upgrade_to(url: str, revision: str) -> None:
    """An empty database migrated by Alembic to ``revision`` only (as the Ledgerlink of that revision did)."""
    from alembic import command

    from ledgerlink.ledger import _make_engine
    from ledgerlink.migrations import alembic_config

    engine = _make_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    engine.dispose()


def _fill_as_0004_left_it(url: str) -> dict[str, int]:
    """What the code at revision 0004 wrote for three nights of a chunked flow and a per-item flow, its chunks
    items with made-up keys. Returns the chunk items' ids by name.

    night-1: chunks 0 and 1 and its deletions, acknowledged. night-2: killed with chunk 0 in flight (twice),
    superseded by night-3, which updated L1. night-4: chunk 0 acknowledged, chunk 1 in flight when it was killed (its
    retry runs after the upgrade). A customer acknowledged and one in flight between them (ids interleave).
    """
    from ledgerlink.ledger import _make_engine
    from tests.support.pre_alembic_ledger import chunk_key, deliveries, flows, items, runs, snapshots

    when = datetime(2026, 11, 1, 2, 30, tzinfo=timezone.utc)
    engine = _make_engine(url)
    ids: dict[str, int] = {}

    def item(conn, name: str, run_id: str, key: str, content_hash: str, operation: str, status: str, attempts: int,
             flow: str = FLOW, last_error: str | None = None) -> None:
        ids[name] = conn.scalar(sa.insert(items).values(
            run_id=run_id, flow=flow, target="onec" if flow == "customers" else "erp",
            entity="customer" if flow == "customers" else "invoice_line", source_key=key,
            target_key="ref-1" if flow == "customers" else None, content_hash=content_hash, operation=operation,
            status=status, message_no=None, attempts=attempts, last_error=last_error, planned_at=when,
            sent_at=when, acknowledged_at=when if status == "acknowledged" else None,
            updated_at=when).returning(items.c.id))

    with engine.begin() as conn:
        conn.execute(sa.insert(runs), [
            {"run_id": run_id, "flow": FLOW, "started_at": when, "finished_at": when, "status": status,
             "summary": None} for run_id, status in (("night-1", "succeeded"), ("night-2", "abandoned"),
                                                     ("night-3", "succeeded"), ("night-4", "running"))])
        item(conn, "C1", "c-run", "C1", "h1", "create", "acknowledged", 1, flow="customers")
        item(conn, "n1 chunk 0", "night-1", chunk_key("night-1", 0), "3 lines", "upsert", "acknowledged", 1)
        item(conn, "n1 chunk 1", "night-1", chunk_key("night-1", 1), "2 lines", "upsert", "acknowledged", 2)
        item(conn, "n1 deletions", "night-1", chunk_key("night-1", -1), "1 lines", "delete", "acknowledged", 1)
        item(conn, "C2", "c-run", "C2", "h2", "create", "sent", 3, flow="customers", last_error="1C timed out")
        item(conn, "n2 chunk 0", "night-2", chunk_key("night-2", 0), "2 lines", "upsert", "rejected", 1,
             last_error="superseded: no longer differs from the target")
        # a second item of one chunk (its run retried once the first had closed): the newer keeps the index
        item(conn, "n2 chunk 0 again", "night-2", chunk_key("night-2", 0), "2 lines", "upsert", "rejected", 1,
             last_error="superseded: no longer differs from the target")
        # no "N lines" (as a test or a hand wrote it): counted from the lines recorded under it
        item(conn, "n3 chunk 0", "night-3", chunk_key("night-3", 0), "lines", "upsert", "acknowledged", 1)
        item(conn, "n4 chunk 0", "night-4", chunk_key("night-4", 0), "1 lines", "upsert", "acknowledged", 1)
        item(conn, "n4 chunk 1", "night-4", chunk_key("night-4", 1), "2 lines", "upsert", "sent", 1)
        conn.execute(sa.insert(flows), [{"name": "customers"}, {"name": FLOW}])
        flow_ids = dict(conn.execute(sa.select(flows.c.name, flows.c.id)).all())
        latest = {"L0": ("0", "n1 chunk 0", "create"), "L1": ("11", "n3 chunk 0", "update"),
                  "L2": ("2", "n1 chunk 0", "create"), "L3": ("3", "n1 chunk 1", "create"),
                  "L4": ("4", "n1 chunk 1", "create"), "L5": ("5", "n4 chunk 0", "create")}
        conn.execute(sa.insert(snapshots), [
            {"flow_id": flow_ids[FLOW], "source_key": key, "content_hash": digest, "target_key": None,
             "acknowledged_at": when, "chunk_item_id": ids[chunk], "operation": operation}
            for key, (digest, chunk, operation) in latest.items()] + [
            {"flow_id": flow_ids["customers"], "source_key": "C1", "content_hash": "h1", "target_key": "ref-1",
             "acknowledged_at": when, "chunk_item_id": None, "operation": None}])
        conn.execute(sa.insert(deliveries), [
            {"chunk_item_id": ids["n1 deletions"], "source_key": "L9", "content_hash": None, "operation": "delete"},
            {"chunk_item_id": ids["n1 chunk 0"], "source_key": "L1", "content_hash": "1", "operation": "create"}])
    engine.dispose()
    return ids


def _deliveries_as_0004_read_them(url: str, **filters) -> list[dict]:
    """``Ledger.deliveries`` as the code at revision 0004 answered it: the lines joined to their chunk items."""
    from ledgerlink.ledger import _make_engine
    from tests.support.pre_alembic_ledger import deliveries, items, snapshots

    lines = sa.union_all(
        sa.select(deliveries.c.chunk_item_id, deliveries.c.source_key, deliveries.c.content_hash,
                  deliveries.c.operation),
        sa.select(snapshots.c.chunk_item_id, snapshots.c.source_key, snapshots.c.content_hash, snapshots.c.operation)
        .where(snapshots.c.chunk_item_id.is_not(None))).subquery("lines")
    query = (sa.select(items.c.run_id, items.c.flow, items.c.target, items.c.entity, lines.c.source_key,
                       lines.c.content_hash, lines.c.operation, lines.c.chunk_item_id, items.c.acknowledged_at)
             .join(items, items.c.id == lines.c.chunk_item_id).order_by(lines.c.chunk_item_id, lines.c.source_key))
    if "run_id" in filters:
        query = query.where(items.c.run_id == filters["run_id"])
    if "key" in filters:
        query = query.where(lines.c.source_key == filters["key"])
    engine = _make_engine(url)
    with engine.connect() as conn:
        found = [dict(row._mapping) for row in conn.execute(query)]
    engine.dispose()
    for row in found:  # the column's name from revision 0005
        row["chunk_id"] = row.pop("chunk_item_id")
    return found


def check_a_ledger_at_0004_moves_its_chunk_items_to_chunks_keeping_every_row(url: str) -> None:
    """Revision 0005 on a ledger the code at 0004 wrote: every chunk item moves to ``chunks`` with its id, its
    index read from its key, its line count from its "N lines"; every other row stays as it was; the per-line
    history reads the same; a retry of the run killed before the upgrade continues its chunk, and new chunks
    and items get new ids."""
    upgrade_to(url, "0004")
    ids = _fill_as_0004_left_it(url)
    before = pre_alembic_ledger.dump(url)
    history = {name: _deliveries_as_0004_read_them(url, **filters) for name, filters in (
        ("all", {}), ("night-1", {"run_id": "night-1"}), ("L1", {"key": "L1"}))}
    assert len(history["all"]) == 8 and [d["source_key"] for d in history["L1"]] == ["L1", "L1"]

    done = migrate(url)
    assert (done.before, done.after) == ("0004", head())
    after = without_later_item_columns(pre_alembic_ledger.dump(url))
    assert after.pop(VERSION_TABLE) == [(head(),)] and before.pop(VERSION_TABLE) == [("0004",)]
    moved = {ids[name]: index_and_lines for name, index_and_lines in {
        "n1 chunk 0": (0, 3), "n1 chunk 1": (1, 2), "n1 deletions": (-1, 1), "n2 chunk 0": (None, 2),
        "n2 chunk 0 again": (0, 2), "n3 chunk 0": (0, 1), "n4 chunk 0": (0, 1), "n4 chunk 1": (1, 2)}.items()}
    assert after.pop("items") == [row for row in before["items"] if int(row[0]) in (ids["C1"], ids["C2"])]
    assert after.pop("chunks") == sorted(as_chunk_row(row, *moved[int(row[0])]) for row in before.pop("items")
                                         if int(row[0]) in moved)
    for table in LATER_TABLES:  # created, empty, by the revisions after 0005
        before.setdefault(table, [])
    assert after == before, "snapshots, deliveries and every other table kept row for row"
    assert schema_differences(url) == []

    ledger = Ledger(url)
    for name, filters in (("all", {}), ("night-1", {"run_id": "night-1"}), ("L1", {"key": "L1"})):
        assert ledger.deliveries(flow=FLOW, **filters) == history[name], name
    assert [(c["run_id"], c["chunk_index"], c["status"]) for c in ledger.chunks(flow=FLOW, run_id="night-4")] == [
        ("night-4", 0, "acknowledged"), ("night-4", 1, "sent")]
    assert [i["source_key"] for i in ledger.items()] == ["C1", "C2"]
    assert [(p["kind"], p["what"]) for p in ledger.planned()][0] == ("item", "C2")
    assert ledger.planned()[1]["what"].startswith("chunk 2 of run night-4: 2 lines, sent at 2026-11-01 02:30:00 UTC")

    # night-4's retry, after the upgrade: it continues its chunk in flight (same id, second attempt).
    retried = ledger.plan_chunk("night-4", FLOW, "erp", "invoice_line", 1, "upsert", 2, sent=True)
    assert retried == ids["n4 chunk 1"]
    ledger.record_confirmed_lines(FLOW, retried, ["L6", "L7"], ["6", "7"], ["create", "create"])
    assert {(c["id"], c["status"], c["attempts"]) for c in ledger.chunks(run_id="night-4")} == {
        (ids["n4 chunk 0"], "acknowledged", 1), (retried, "acknowledged", 2)}
    newest = ledger.plan_chunk("night-5", FLOW, "erp", "invoice_line", 0, "upsert", 1, sent=True)
    assert newest > max(moved), "a new chunk's id is past every moved one"
    item = ledger.plan("c-run-2", "customers", "onec", "customer", [PlannedChange("C3", "ref-3", "h3", "create")])
    # Items number on by their own rule (SQLite may give an id a moved chunk had: the two never meet).
    assert [i["id"] for i in ledger.items()] == [ids["C1"], ids["C2"], item["C3"]]
    ledger.engine.dispose()
