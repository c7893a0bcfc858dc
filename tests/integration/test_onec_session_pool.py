"""The counterparties flow through a pool of 1C sessions against the stand-in over real HTTP: requests overlap in
1C, the result is the one-session result, and refusals, outages, lost answers and wrong credentials behave as
they do with one session (test_customers_to_onec.py covers those with one)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from ledgerlink.errors import AuthenticationFailed, TerminalError, TransientError
from ledgerlink.flows import customers_to_onec as flow
from ledgerlink.ledger import ACKNOWLEDGED, PLANNED, REJECTED, SENT
from ledgerlink.onec.counterparties import ref_key
from ledgerlink.retrying import RetryBudget
from sandbox.generator import generate_billing
from tests.support.onec_flow import USER, OneCWorld, content_differences

CUSTOMERS = 24
LATENCY = 0.03  # 1C's own time per request: what sessions overlap


@pytest.fixture(scope="module")
def seed_billing(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("billing-seed") / "billing.db"
    generate_billing(path, seed=11, customers=CUSTOMERS)
    return path


@pytest.fixture
def open_world(tmp_path, monkeypatch, seed_billing):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEDGERLINK_LEDGER_URL", raising=False)
    worlds = []

    def open_(name: str, sessions: int) -> OneCWorld:
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(seed_billing, folder / "billing.db")
        worlds.append(OneCWorld(folder, folder / "billing.db", sessions=sessions, latency_seconds=LATENCY).start())
        return worlds[-1]

    yield open_
    for world in worlds:
        world.close()


def staged(world: OneCWorld, run_id: str):
    return flow.gate(flow.extract(run_id, world.billing, world.ledger), world.ledger)


def items_of(world: OneCWorld, run_id: str) -> dict[str, tuple]:
    return {i["source_key"]: (i["status"], i["operation"], i["attempts"])
            for i in world.ledger.items(flow=flow.FLOW, run_id=run_id)}


def without_versions(world: OneCWorld) -> dict[str, dict]:
    return {ref: {k: v for k, v in obj.items() if k != "DataVersion"} for ref, obj in world.by_ref().items()}


def test_four_sessions_overlap_in_1c_and_end_where_one_session_ends(open_world):
    results = {}
    for sessions in (1, 4):
        world = open_world(f"s{sessions}", sessions)
        world.sessions_seen(reset=True)
        started = time.perf_counter()
        first = world.run("run-1")
        seconds = time.perf_counter() - started
        seen = world.sessions_seen()
        world.sql("UPDATE customers SET legal_name = legal_name || ' (renamed)', updated_at = '2099-01-01T00:00:00+00:00' "
                  "WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY customer_id LIMIT 6)")
        second = world.run("run-2")
        results[sessions] = {
            "objects": without_versions(world), "seconds": seconds, "most_in_flight": seen["most_in_flight"],
            "summaries": [(s.created, s.updated, s.deleted, s.unchanged, s.rejected, s.reconciliation)
                          for s in (first, second)],
            "items": [items_of(world, run_id) for run_id in ("run-1", "run-2")],
            "snapshot": world.snapshot(), "differences": content_differences(world)}
    one, four = results[1], results[4]
    assert one["most_in_flight"] == 1 and 1 < four["most_in_flight"] <= 4
    assert four["objects"] == one["objects"] and four["snapshot"] == one["snapshot"]
    assert four["summaries"] == one["summaries"] and four["items"] == one["items"]
    assert one["summaries"][0][0] == CUSTOMERS and one["summaries"][1][1] == 6
    assert one["differences"] == four["differences"] == []
    # Each create is one request spending LATENCY in 1C: one session pays it 24 times in a row.
    assert one["seconds"] > CUSTOMERS * LATENCY and four["seconds"] < one["seconds"]


def test_a_refusal_in_the_pool_rejects_that_customer_and_the_next_run_sends_it(open_world):
    world = open_world("refused", 4)
    world.faults([{"mode": "error", "status": 400, "count": 1, "methods": ["POST"]}])
    with pytest.raises(TerminalError, match="HTTP 400") as failure:
        world.run("run-1")
    statuses = {key: status for key, (status, _, _) in items_of(world, "run-1").items()}
    (refused,) = [key for key, status in statuses.items() if status == REJECTED]
    assert refused in str(failure.value) and set(statuses.values()) == {ACKNOWLEDGED, REJECTED}
    assert ref_key(refused) not in world.by_ref() and len(world.dump()) == CUSTOMERS - 1
    assert world.run("run-2").created == 1 and content_differences(world) == []


def test_short_outages_are_retried_per_customer_inside_the_pool(open_world):
    world = open_world("outages", 4)
    meta = staged(world, "run-1")
    world.faults([{"mode": "error", "status": 503, "count": 6, "methods": ["POST"]},
                  {"mode": "drop_after_apply", "count": 2, "methods": ["POST"], "after": 10}])
    meta = flow.load(meta, world.client, world.ledger, retry=RetryBudget(first_wait=0.02))
    assert (meta.outcomes.created, meta.outcomes.already_in_target, meta.outcomes.rejected) == (CUSTOMERS, 0, 0)
    codes = [o["Code"] for o in world.dump()]
    assert len(codes) == len(set(codes)) == CUSTOMERS, "a lost answer never makes a second counterparty"
    attempts = [attempts for _, _, attempts in items_of(world, "run-1").values()]
    assert sum(attempts) == CUSTOMERS + 8, "each failed POST retried once, each retry counted in the ledger"
    summary = flow.reconcile_and_report(meta, world.billing, world.client, world.ledger)
    assert summary.reconciliation == [] and summary.counts_add_up()


def test_1c_staying_down_stops_the_pool_and_the_next_attempt_continues(open_world):
    world = open_world("down", 4)
    meta = staged(world, "run-1")
    world.faults([{"mode": "error", "status": 503, "after": 12, "methods": ["POST"]}])
    with pytest.raises(TransientError, match="still failing"):
        flow.load(meta, world.client, world.ledger, retry=RetryBudget(per_item=1, first_wait=0.01))
    statuses = [status for status, _, _ in items_of(world, "run-1").values()]
    assert set(statuses) <= {ACKNOWLEDGED, SENT, PLANNED} and statuses.count(ACKNOWLEDGED) == len(world.dump())
    world.faults([])
    meta = flow.load(meta, world.client, world.ledger)
    assert meta.outcomes.created == CUSTOMERS and meta.outcomes.already_in_target == 0
    assert flow.reconcile_and_report(meta, world.billing, world.client, world.ledger).reconciliation == []


def test_a_wrong_password_stops_the_pool_as_one_error(open_world):
    world = open_world("password", 4)
    meta = staged(world, "run-1")
    world.client.session.auth = (USER, "wrong password")  # every session opened from it carries the same
    with pytest.raises(AuthenticationFailed, match="HTTP 401"):
        flow.load(meta, world.client, world.ledger)
    assert {status for status, _, _ in items_of(world, "run-1").values()} <= {PLANNED, SENT}
    assert world.dump() == []
