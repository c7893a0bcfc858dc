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


def _chunk(ledger: Ledger, name: str) -> int:
    return ledger.plan_and_mark_sent("run", FLOW, "erp", "invoice_line",
                                     [PlannedChange(name, None, "lines", "upsert")])[name]


def _history(ledger: Ledger, **filters) -> list[tuple]:
    return [(d["chunk_item_id"], d["source_key"], d["content_hash"], d["operation"])
            for d in ledger.deliveries(flow=FLOW, **filters)]


def check_every_delivery_is_listed_once(ledger: Ledger) -> None:
    """A first load's lines go into the snapshot only, each its line's latest delivery; a later change moves
    the delivery it supersedes into ``deliveries``, a deletion is written there, and forgetting a line keeps
    its delivery."""
    first = _chunk(ledger, "chunk 1")
    ledger.record_confirmed_lines(FLOW, first, [f"L{i}" for i in range(5)], [str(i) for i in range(5)],
                                  ["create"] * 5, expect_new=True)
    with ledger.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM deliveries")) == 0
        assert conn.scalar(sa.text("SELECT count(*) FROM snapshots WHERE chunk_item_id = :c"), {"c": first}) == 5
    second = _chunk(ledger, "chunk 2")
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
    after = pre_alembic_ledger.dump(url)
    assert after.pop(VERSION_TABLE) == [(head(),)]
    versions_before, versions_after = before.pop("ledger_schema_version"), after.pop("ledger_schema_version")
    assert versions_after[:len(versions_before)] == versions_before  # kept, with their times
    assert [int(row[0]) for row in versions_after] == [1, 2, 3, 4]
    before.setdefault("flow_leases", [])  # version 3 had none; 0004 creates it
    before.setdefault("usage_files", [])  # revisions after the runner's last version create theirs (0006)
    assert after == before
    assert schema_differences(url) == []
    ledger = Ledger(url)
    assert ledger.snapshot("customers") == {"C0": ("h0", "ref-0")}
    assert ledger.snapshot_hashes("lines", ["L0", "L1", "L2"]) == {"L0": "0", "L1": "1", "L2": "2"}
    assert [d["source_key"] for d in ledger.deliveries(flow="lines")] == ["L0", "L1", "L2", "L9"]
    ledger.engine.dispose()
    again = migrate(url)
    assert (again.before, again.stamped, again.after, again.changed) == (head(), None, head(), False)


def downgrade_to_schema_2(ledger: Ledger) -> None:
    """The snapshot and deliveries tables as schema 2 had them (empty), schema 3 not yet applied, and the
    ledger as the runner before Alembic left it: no flow lease, no Alembic version table."""
    postgres = ledger.engine.dialect.name == "postgresql"
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE snapshots"))
        conn.execute(sa.text("DROP TABLE flows"))
        conn.execute(sa.text("DROP TABLE flow_leases"))
        conn.execute(sa.text("DROP TABLE usage_files"))  # 0006's, after the runner's last version
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
    old = _chunk(ledger, "chunk old")
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
    for table in ("runs", "items", "deliveries", "watermarks", "quarantine", "validations"):
        assert after[table] == before[table], table  # untouched; the snapshot's rows are checked below
    assert len(after["snapshots"]) == len(before["snapshots"]) == 3
    assert [int(row[0]) for row in after["ledger_schema_version"]] == [1, 2, 3, 4]
    assert schema_differences(url) == []
    upgraded = Ledger(url)
    require_head(upgraded.engine)  # this process saw the URL at head before the downgrade: check it again
    inspector = sa.inspect(upgraded.engine)
    assert {"flow_id", "chunk_item_id", "operation"} <= {c["name"] for c in inspector.get_columns("snapshots")}
    assert "flow" not in {c["name"] for c in inspector.get_columns("snapshots")}
    assert inspector.get_pk_constraint("snapshots")["constrained_columns"] == ["flow_id", "source_key"]
    assert {i["name"] for i in inspector.get_indexes("deliveries")} == {"ix_deliveries_chunk", "ix_deliveries_source_key"}
    update = _chunk(upgraded, "chunk update")
    upgraded.record_confirmed_lines(FLOW, update, ["L1"], ["10"], ["update"])
    first_load = _chunk(upgraded, "chunk new")  # COPied into the snapshot: acknowledged_at from its default
    upgraded.record_confirmed_lines(FLOW, first_load, ["L5"], ["5"], ["create"], expect_new=True)
    assert _history(upgraded) == [(old, "L1", "1", "create"), (old, "L2", "2", "create"),
                                  (update, "L1", "10", "update"), (first_load, "L5", "5", "create")]
    assert upgraded.snapshot_hashes(FLOW, ["L1", "L2", "L5"]) == {"L1": "10", "L2": "2", "L5": "5"}
    assert upgraded.snapshot("customers") == {"C1": ("h", None)}  # every flow's rows came across
    assert upgraded.snapshot_fingerprint(FLOW)[0] == 3
    upgraded.engine.dispose()
