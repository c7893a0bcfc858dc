"""The bridge intake into a billing on a real PostgreSQL (a throwaway cluster) through a real OpenSSH sshd: the path
the load takes there (one COPY stream per file, sent by a thread while the next block is gated; call ids taken
before asked on a second connection), in blocks small enough that every file spans many: a file loads whole or
not at all, a call id twice across blocks refuses it naming both lines, a correction replaces the first file."""
from __future__ import annotations

import itertools
import json

import psycopg
import pytest
import sqlalchemy as sa

from ledgerlink.billing.usage import read_plans
from ledgerlink.flows.bridge_usage import take_files
from ledgerlink.ledger import Ledger
from sandbox.generator import generate_billing
from tests.support.pg import create_database, run_postgres
from tests.support.sshd import run_sshd, sftp_client
from tests.support.usage_world import PERIOD, call, cdr_bytes, drop, usage_rows

DATABASES = itertools.count(1)
SMALL_BLOCKS = 400  # bytes: three or four calls a block
NAME = "cdr_BR01_20261103.utf-8.csv"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with run_postgres(tmp_path_factory.mktemp("pg")) as info:
        template = create_database(info, "usage_template")
        generate_billing(template.url, seed=7, customers=40, usage_rows=0)
        engine = sa.create_engine(template.url)
        plans = read_plans(engine)
        engine.dispose()
        active = sorted(c for c in plans.by_customer if plans.for_period(c, PERIOD))
        yield info, active


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_sshd(tmp_path_factory.mktemp("sshd")) as info:
        yield info


class World:
    def __init__(self, cluster, server, tmp_path, name: str):
        info, self.customers = cluster
        with psycopg.connect(info.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE usage_template')
        self.billing = sa.create_engine(info.url.rsplit("/", 1)[0] + f"/{name}")
        self.ledger = Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")
        self.server = server
        self.folder = server.root / name
        self.folder.mkdir()
        self.runs = 0

    def take(self, **options):
        self.runs += 1
        with sftp_client(self.server) as sftp:
            return take_files(f"run-{self.runs}", sftp, self.billing, self.ledger, folder=str(self.folder),
                              landing_dir=self.folder.parent / f"landing-{self.folder.name}", settle_seconds=0,
                              block_bytes=SMALL_BLOCKS, **options)

    def calls(self, count, start=1, **changes):
        return [call(start + i, self.customers[i % len(self.customers)], **changes) for i in range(count)]


@pytest.fixture()
def world(cluster, server, tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    name = f"billing_{next(DATABASES)}"
    world = World(cluster, server, tmp_path, name)
    yield world
    world.billing.dispose()


def test_a_file_of_many_blocks_loads_whole_through_one_copy_stream(world):
    rows = world.calls(60)
    rows[5]["customer_ref"] = "NOBODY"
    drop(world.folder, NAME, cdr_bytes(rows))
    (outcome,) = world.take().files
    assert (outcome.status, outcome.rows_loaded, outcome.rows_held_back) == ("loaded", 59, 1)
    loaded = usage_rows(world.billing)
    assert sorted(loaded) == sorted(r["call_id"] for i, r in enumerate(rows) if i != 5)
    assert loaded[rows[0]["call_id"]] == (rows[0]["customer_ref"], "2026-11-03T07:00:00+00:00", 600, 3, NAME)
    with world.billing.connect() as conn:
        assert conn.execute(sa.text("SELECT count(DISTINCT usage_id) FROM usage")).scalar() == 59


@pytest.mark.parametrize("first_held_back", [False, True])
def test_a_call_id_twice_across_blocks_refuses_the_file_and_loads_nothing(world, first_held_back):
    rows = world.calls(40)
    if first_held_back:
        rows[2]["customer_ref"] = "NOBODY"
    rows[37] = dict(rows[2], customer_ref=rows[9]["customer_ref"])
    drop(world.folder, NAME, cdr_bytes(rows))
    (outcome,) = world.take().files
    assert outcome.status == "refused" and "call_id unique within the file" in outcome.reason, outcome.reason
    assert "'line': 4" in outcome.reason and "'line': 39" in outcome.reason, outcome.reason
    assert usage_rows(world.billing) == {} and world.ledger.quarantined() == []


def test_a_defect_in_the_last_block_rolls_back_the_rows_already_streamed(world):
    rows = world.calls(50)
    rows[48]["duration_seconds"] = "-3"
    drop(world.folder, NAME, cdr_bytes(rows))
    (outcome,) = world.take().files
    assert outcome.status == "refused" and "duration_seconds not negative" in outcome.reason
    assert usage_rows(world.billing) == {}


def test_calls_taken_before_by_another_file_or_by_billing_itself_are_held_back_and_a_correction_replaces(world):
    first = world.calls(20)
    drop(world.folder, NAME, cdr_bytes(first))
    world.take()
    with world.billing.begin() as conn:  # a call billing recorded itself (no source file), under a bridge call id
        conn.execute(sa.text("INSERT INTO usage (usage_id, customer_id, contract_id, tariff_id, call_id, started_at,"
                             " duration_seconds, participants, source_file) SELECT 7, customer_id, contract_id,"
                             " tariff_id, 'BR01-00500', started_at, 60, 2, NULL FROM usage LIMIT 1"))
    second = [first[3], *world.calls(10, start=100), call(500, world.customers[0])]
    drop(world.folder, "cdr_BR02_20261103.utf-8.csv", cdr_bytes(second))
    (outcome,) = world.take().files
    assert (outcome.rows_loaded, outcome.rows_held_back) == (10, 2)
    reasons = {q["source_key"]: q["reasons"] for q in world.ledger.quarantined()}
    assert reasons == {first[3]["call_id"]: "call_id: not taken before from another file",
                       "BR01-00500": "call_id: not taken before from another file"}
    corrected = world.calls(12, duration="900")
    drop(world.folder, NAME, cdr_bytes(corrected))
    (outcome,) = world.take().files
    assert (outcome.status, outcome.replaced, outcome.rows_loaded) == ("loaded", True, 12)
    from_first = {k: v for k, v in usage_rows(world.billing).items() if v[-1] == NAME}
    assert sorted(from_first) == sorted(r["call_id"] for r in corrected) and {v[2] for v in from_first.values()} == {900}
    assert json.loads(json.dumps(outcome.seconds))["write"] >= 0


@pytest.mark.parametrize("held_ids, expected_query", [
    (["BR01-00004"] + [f"BR01-{n:05d}" for n in range(100, 129)], "BETWEEN"),  # 17 held ids in range, 30 asked
    (["BR01-00004", "BR01-00019", "BR01-00100"], "ANY("),  # 16 held ids in range, 3 asked: each is probed
])
def test_calls_taken_before_are_found_by_one_range_scan_or_by_probing_each(world, held_ids, expected_query):
    from ledgerlink.billing.usage import call_ids_taken

    drop(world.folder, NAME, cdr_bytes(world.calls(20)))
    world.take()
    statements = []
    sa.event.listen(world.billing, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    found = call_ids_taken(world.billing, held_ids, other_than_file="cdr_BR02_20261103.utf-8.csv")
    assert found == {i for i in held_ids if i <= "BR01-00020"}
    assert expected_query in statements[-1] and len(statements) == (1 if expected_query == "BETWEEN" else 2)
    assert call_ids_taken(world.billing, held_ids, other_than_file=NAME) == set(), "its own file's calls are not"
