"""The SQL spine on a real PostgreSQL (a throwaway cluster): billing, ERP and ledger all on the server.

COPY into a staging table plus one INSERT ... ON CONFLICT; reruns change nothing; a crash and a retry
converge; deletions reach the ERP; totals reconcile exactly.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from devtools.pg import create_database
from ledgerlink.billing.figures import invoice_line_figures
from ledgerlink.erp import invoice_lines as erp_lines
from ledgerlink.flows import invoice_lines_to_erp as flow
from ledgerlink.ledger import Ledger, PlannedChange
from ledgerlink.reconcile import compare
from sandbox.generator import mutate_billing
from ledgerlink.migrations import migrate
from tests.support.crashes import SimulatedCrash
from tests.support.ledger_history import (check_a_fresh_ledger_migrates_to_exactly_the_models,
                                          check_a_ledger_at_0004_moves_its_chunk_items_to_chunks_keeping_every_row,
                                          check_a_ledger_built_before_alembic_upgrades_keeping_every_row,
                                          check_a_schema_2_ledger_upgrades_without_listing_a_delivery_twice,
                                          check_every_delivery_is_listed_once, downgrade_to_schema_2)
from tests.support.pg_world import server, world  # noqa: F401 - the fixtures


def _equal(world) -> None:
    columns = [c for c in erp_lines.COLUMNS if c != "content_hash"]
    select = ", ".join(f"i.{c}" if c in ("customer_id", "issue_date") else f"l.{c}" for c in columns)
    with world["billing"].connect() as conn:
        source = sorted(tuple(map(str, r)) for r in conn.execute(sa.text(
            f"SELECT {select} FROM invoice_lines l JOIN invoices i ON i.invoice_id = l.invoice_id")))
    with world["erp"].connect() as conn:
        target = sorted(tuple(map(str, r)) for r in conn.execute(sa.text(
            f"SELECT {', '.join(columns)} FROM {erp_lines.TABLE}")))
    assert source == target
    assert compare(flow.FLOW, invoice_line_figures(world["billing"]),
                   erp_lines.target_figures(world["erp"])) == []


def test_full_incremental_and_rerun_on_postgres(world):
    first = flow.run_all("pg-1", world["billing"], world["erp"], world["ledger"], chunk_rows=100)
    assert first.created > 0 and first.reconciliation == []
    _equal(world)
    assert world["erp"].dialect.name == "postgresql"

    touched = mutate_billing(world["billing_url"], seed=2, changed_fraction=0.1, deleted=3, added=2,
                             as_of=datetime(2026, 11, 21, tzinfo=timezone.utc))
    second = flow.run_all("pg-2", world["billing"], world["erp"], world["ledger"], chunk_rows=100)
    assert second.deleted == len(touched["invoice_lines"]["deleted"]) >= 1
    assert second.created == len(touched["invoice_lines"]["added"]) == 2
    assert second.updated == len(touched["invoice_lines"]["changed"])
    _equal(world)

    third = flow.run_all("pg-3", world["billing"], world["erp"], world["ledger"], chunk_rows=100)
    assert third.sent == 0 and third.deleted == 0


def test_a_bulk_load_leaves_the_erp_table_and_the_ledger_with_fresh_statistics(world, monkeypatch):
    """Reconciliation sums the ERP's table right after the load: it must not plan on empty statistics."""
    monkeypatch.setattr(flow, "BULK_LINES", 1)
    flow.run_all("pg-bulk", world["billing"], world["erp"], world["ledger"], chunk_rows=500)
    for engine, table in ((world["erp"], erp_lines.TABLE), (world["ledger"].engine, "snapshots")):
        with engine.connect() as conn:
            analyzed = conn.execute(sa.text("SELECT last_analyze, n_live_tup FROM pg_stat_user_tables "
                                            "WHERE relname = :t"), {"t": table}).one()
            assert analyzed.last_analyze is not None and analyzed.n_live_tup > 0, table


def test_crash_after_the_upsert_committed_then_retry_on_postgres(world, monkeypatch):
    meta = flow.gate(flow.extract("pg-crash", world["billing"], world["ledger"], chunk_rows=100), world["ledger"])
    real = flow.upsert_frame
    calls = {"n": 0}

    def commit_then_die(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise SimulatedCrash()

    monkeypatch.setattr(flow, "upsert_frame", commit_then_die)
    with pytest.raises(SimulatedCrash):
        flow.load(meta, world["erp"], world["ledger"])
    monkeypatch.setattr(flow, "upsert_frame", real)
    in_flight = {c["id"] for c in world["ledger"].chunks() if c["status"] == "sent"}
    assert len(in_flight) == 1, "the chunk whose upsert committed is in flight"
    flow.reconcile_and_report(flow.load(meta, world["erp"], world["ledger"]), world["billing"], world["erp"],
                              world["ledger"])
    _equal(world)
    assert world["ledger"].planned() == []
    chunks = world["ledger"].chunks()
    assert all(c["status"] == "acknowledged" for c in chunks), "a retry continues its chunks, never supersedes them"
    assert len(chunks) == len({c["chunk_index"] for c in chunks}) == len(meta.batch)
    assert {c["id"] for c in chunks if c["attempts"] == 2} == in_flight
    assert world["ledger"].items() == [], "lines and chunks are never items"


def test_a_night_with_only_deletions_reads_nothing_and_still_deletes_on_postgres(world):
    """The read returns no rows when nothing changed since the watermark: the extract yields no chunk and the
    deletions, found by key, still reach the ERP."""
    from ledgerlink.billing.extract import read_invoice_lines
    from ledgerlink.tracking import read_from

    flow.run_all("pg-full", world["billing"], world["erp"], world["ledger"], chunk_rows=100)
    since = read_from(world["ledger"].watermark(flow.FLOW, flow.WATERMARK))
    with world["billing"].begin() as conn:
        # every line the overlap would re-read goes, and every line of their invoices (no header moves either)
        invoices = conn.execute(sa.text("SELECT DISTINCT invoice_id FROM invoice_lines WHERE updated_at >= :since"),
                                {"since": since}).scalars().all()
        gone = conn.execute(sa.text("DELETE FROM invoice_lines WHERE invoice_id = ANY(:ids)"),
                            {"ids": invoices}).rowcount
        conn.execute(sa.text("DELETE FROM invoices WHERE invoice_id = ANY(:ids)"), {"ids": invoices})
    assert gone >= 1
    assert list(read_invoice_lines(world["billing"], since)) == []

    quiet = flow.run_all("pg-quiet", world["billing"], world["erp"], world["ledger"], chunk_rows=100)
    assert quiet.sent == 0 and quiet.deleted == gone and quiet.reconciliation == []
    _equal(world)


def test_postgres_hashes_a_line_the_same_whichever_way_it_is_read(world):
    """The streaming read (ADBC) and the by-key read (the driver) get ``_hash`` from the same SQL expression: a
    line read both ways must not look changed. The hash follows content, NULL is not '', and a swap is a change."""
    from ledgerlink.billing.extract import content_hash_sql, read_invoice_lines, read_invoice_lines_by_key

    columns = flow.CONTENT_COLUMNS
    streamed = pd.concat(list(read_invoice_lines(world["billing"], None, 7, columns)), ignore_index=True)
    keys = streamed["line_id"].tolist()[:20]
    by_key = read_invoice_lines_by_key(world["billing"], keys, hash_columns=columns)
    read_by_key = dict(zip(by_key["line_id"], by_key["_hash"]))
    assert read_by_key == dict(zip(streamed["line_id"][:20], streamed["_hash"][:20]))
    assert streamed["_hash"].nunique() == len(streamed)

    first = keys[0]
    with world["billing"].begin() as conn:
        conn.execute(sa.text("UPDATE invoice_lines SET description = description || '.' WHERE line_id = :k"),
                     {"k": first})
        # NULL is not '', and values swapped between two columns are a change
        one = content_hash_sql(["tariff_id"])
        two = content_hash_sql(["line_id", "invoice_id"])
        hashes = conn.execute(sa.text(
            f"SELECT (SELECT {one} FROM (SELECT NULL::text AS tariff_id) l), "
            f"(SELECT {one} FROM (SELECT ''::text AS tariff_id) l), "
            f"(SELECT {two} FROM (SELECT 'a' AS line_id, 'b' AS invoice_id) l), "
            f"(SELECT {two} FROM (SELECT 'b' AS line_id, 'a' AS invoice_id) l)")).one()
        assert len(set(hashes)) == 4
    edited = read_invoice_lines_by_key(world["billing"], [first], hash_columns=columns)["_hash"][0]
    assert edited != read_by_key[first]


def test_a_first_load_into_an_erp_that_already_holds_the_lines_falls_back_to_the_upsert(world, server):
    """A first load COPies straight into the table; when the ERP holds some keys already (here: a ledger that
    was rebuilt from nothing), the COPY's transaction rolls back whole and the staged upsert runs instead."""
    first = flow.run_all("pg-before", world["billing"], world["erp"], world["ledger"], chunk_rows=100)
    fresh = create_database(server, "rebuilt_ledger")
    rebuilt = Ledger.migrated(fresh.url)
    again = flow.run_all("pg-rebuilt", world["billing"], world["erp"], rebuilt, chunk_rows=100)
    assert again.created == first.created and again.reconciliation == []
    _equal(world)  # every line once: the PRIMARY KEY would have refused a second copy


def test_lines_expected_new_but_already_in_the_snapshot_still_move_it_once(world):
    """``expect_new`` inserts snapshot rows without deleting first; a key acknowledged in the meantime (by
    another run) rolls back to a savepoint and takes the delete-then-insert path: one row per key, newest hash."""
    ledger = world["ledger"]

    def chunk(index: int) -> int:
        return ledger.plan_chunk("run", "lines", "erp", "invoice_line", index, "upsert", 2, sent=True)

    ledger.record_confirmed_lines("lines", chunk(0), ["A", "B"], ["1", "2"], ["create", "create"],
                                  expect_new=True)
    ledger.record_confirmed_lines("lines", chunk(1), ["B", "C"], ["20", "3"], ["create", "create"],
                                  expect_new=True)
    assert ledger.snapshot_hashes("lines", ["A", "B", "C"]) == {"A": "1", "B": "20", "C": "3"}
    assert [(d["source_key"], d["content_hash"]) for d in ledger.deliveries(flow="lines")] == [
        ("A", "1"), ("B", "2"), ("B", "20"), ("C", "3")]
    assert [c["status"] for c in ledger.chunks(flow="lines")] == ["acknowledged", "acknowledged"]


def test_lines_recorded_alongside_commit_only_once_the_target_has(world):
    """The ledger writes a chunk's lines while the block sends it, and commits only when the block succeeds:
    during the block nothing is visible; a failed block records nothing; a failed record is raised."""
    ledger = world["ledger"]

    def chunk(index: int) -> int:
        return ledger.plan_chunk("run", "lines", "erp", "invoice_line", index, "upsert", 2, sent=True)

    with ledger.recording_lines_alongside("lines", chunk(0), ["A", "B"], ["1", "2"], ["create", "create"],
                                          expect_new=True):
        assert ledger.snapshot_hashes("lines", ["A", "B"]) == {}  # not before the target commits
        assert [c["status"] for c in ledger.chunks(flow="lines")] == ["sent"]
    with ledger.recording_lines_alongside("lines", chunk(1), ["B", "C"], ["20", "3"], ["update", "create"]):
        pass
    assert ledger.snapshot_hashes("lines", ["A", "B", "C"]) == {"A": "1", "B": "20", "C": "3"}
    assert [c["status"] for c in ledger.chunks(flow="lines")] == ["acknowledged", "acknowledged"]

    with pytest.raises(ConnectionError):
        with ledger.recording_lines_alongside("lines", chunk(2), ["D"], ["4"], ["create"]):
            raise ConnectionError("the ERP went away before its commit")
    with pytest.raises(sa.exc.DataError, match="value too long"):
        # an operation too long for its column: the database refuses the record, in the thread
        with ledger.recording_lines_alongside("lines", chunk(3), ["E"], ["5"], ["x" * 50]):
            pass
    assert ledger.snapshot_hashes("lines", ["D", "E"]) == {}
    statuses = {c["chunk_index"]: c["status"] for c in ledger.chunks(flow="lines")}
    assert statuses[2] == statuses[3] == "sent"  # in flight: a retry continues them
    retried = chunk(2)
    assert {c["id"]: c["attempts"] for c in ledger.chunks(flow="lines")}[retried] == 2, "a retry continues it"
    assert [d["source_key"] for d in ledger.deliveries(flow="lines")] == ["A", "B", "B", "C"]


def test_the_history_lists_every_line_delivery_once_on_postgres(world):
    check_every_delivery_is_listed_once(world["ledger"])


def test_a_schema_2_ledger_on_postgres_upgrades_without_listing_a_delivery_twice(world):
    check_a_schema_2_ledger_upgrades_without_listing_a_delivery_twice(
        world["ledger"].engine.url.render_as_string(hide_password=False))


def test_a_fresh_ledger_on_postgres_migrates_to_exactly_the_models(server):
    check_a_fresh_ledger_migrates_to_exactly_the_models(create_database(server, "fresh_ledger").url)


@pytest.mark.parametrize("version", [3, 4])
def test_a_ledger_built_before_alembic_on_postgres_upgrades_keeping_every_row(server, version):
    check_a_ledger_built_before_alembic_upgrades_keeping_every_row(
        create_database(server, f"pre_alembic_ledger_{version}").url, version)


def test_a_ledger_at_0004_on_postgres_moves_its_chunk_items_to_chunks_keeping_every_row(server):
    check_a_ledger_at_0004_moves_its_chunk_items_to_chunks_keeping_every_row(
        create_database(server, "ledger_at_0004").url)


def test_a_ledger_role_granted_the_tables_keeps_its_rights_through_the_upgrade_to_schema_3(world):
    """A deployment may run nightly loads as a role that does not own the ledger's tables: the upgrade alters
    the snapshot in place (its grants stay) and grants that role the same on the new flows table."""
    owner = world["ledger"]
    downgrade_to_schema_2(owner)
    with owner.engine.begin() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS ledger_writer"))
        conn.execute(sa.text("CREATE ROLE ledger_writer LOGIN"))
        conn.execute(sa.text("GRANT ALL ON ALL TABLES IN SCHEMA public TO ledger_writer"))
        conn.execute(sa.text("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ledger_writer"))
    url = owner.engine.url
    owner.engine.dispose()
    assert migrate(url.render_as_string(hide_password=False)).stamped == "0002"  # the owner upgrades
    writer = Ledger(url.set(username="ledger_writer").render_as_string(hide_password=False))
    chunk = writer.plan_chunk("run", "a new flow", "erp", "invoice_line", 0, "upsert", 2, sent=True)
    writer.record_confirmed_lines("a new flow", chunk, ["A", "B"], ["1", "2"], ["create", "create"], expect_new=True)
    assert writer.snapshot_hashes("a new flow", ["A", "B"]) == {"A": "1", "B": "2"}
    assert len(writer.deliveries(flow="a new flow")) == 2
    assert [c["status"] for c in writer.chunks(flow="a new flow")] == ["acknowledged"]
    writer.engine.dispose()


def test_acknowledged_http_items_move_the_snapshot_with_their_target_keys_on_postgres(world):
    """The per-item path (1C's records) on PostgreSQL: acknowledgement moves the snapshot with the target key,
    a deletion removes the row."""
    ledger = world["ledger"]
    ids = ledger.plan_and_mark_sent("run-1", "customers", "onec", "customer",
                                    [PlannedChange("C1", "ref-1", "h1", "create"),
                                     PlannedChange("C2", "ref-2", "h2", "create")])
    ledger.acknowledge("customers", [(ids["C1"], "C1", "h1", "ref-1", "create"),
                                     (ids["C2"], "C2", "h2", "ref-2", "create")])
    assert ledger.snapshot("customers") == {"C1": ("h1", "ref-1"), "C2": ("h2", "ref-2")}
    ids = ledger.plan_and_mark_sent("run-2", "customers", "onec", "customer",
                                    [PlannedChange("C1", "ref-1", None, "delete")])
    ledger.acknowledge("customers", [(ids["C1"], "C1", None, "ref-1", "delete")])
    assert ledger.snapshot("customers") == {"C2": ("h2", "ref-2")}
    assert ledger.planned() == []
