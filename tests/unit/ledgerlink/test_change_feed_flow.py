"""The change-feed framework (flows.feed.ChangeFeedFlow) on its own: an in-memory feed that keeps its changes until
acknowledged, and an in-memory target deciding per record. What is tested is the lifecycle: the source acknowledged
last and only when the target agrees, replays decided once, what was held remembered, money received = applied +
held back."""
from __future__ import annotations

import pandas as pd
import pytest

from ledgerlink.errors import ConfigurationError, ReconciliationError
from ledgerlink.flows.feed import APPLY, HOLD, PASS, ChangeFeedFlow, Decision
from ledgerlink.flows.params import RunParams
from ledgerlink.flows.payments_from_onec import SPEC, money_of
from ledgerlink.gates.suites.payment import exact_minor
from ledgerlink.ledger import Ledger

COLUMNS = ["payment_id", "amount", "currency", "paid_on", "counterparty_ref", "purpose", "posted", "reference"]


class Batch:
    def __init__(self, records, deleted, position):
        self.records, self.deleted, self.position, self.ignored = records, deleted, position, 0


class Feed:
    """Changes stay until acknowledged with a position at least their own, as 1C's registrations do."""

    name, position_name = "test feed", "message_no"

    def __init__(self):
        self.pending: dict[str, tuple[int, dict | None]] = {}  # key -> (stamp, record or None when deleted)
        self.sent_no = 0
        self.acknowledged: list[str] = []

    def change(self, record: dict) -> None:
        self.pending[record["payment_id"]] = (0, record)

    def delete(self, key: str) -> None:
        self.pending[key] = (0, None)

    def read(self, after):
        self.sent_no = max(self.sent_no, int(after or 0)) + 1
        self.pending = {k: (stamp or self.sent_no, r) for k, (stamp, r) in self.pending.items()}
        records = [r for _, r in self.pending.values() if r is not None]
        return Batch(pd.DataFrame(records, columns=COLUMNS), [k for k, (_, r) in self.pending.items() if r is None],
                     str(self.sent_no))

    def acknowledge(self, position):
        self.acknowledged.append(position)
        self.pending = {k: v for k, v in self.pending.items() if v[0] > int(position) or v[0] == 0}


class Target:
    """Applies amounts under 100.00, holds the rest; ``lose`` drops what it is told to write (a broken target)."""

    system, name = "T", "test target"

    def __init__(self):
        self.rows: dict[str, tuple[str, int]] = {}
        self.writes = 0
        self.lose = False

    def holds(self, keys):
        return {k: self.rows[k] for k in keys if k in self.rows}

    def decide(self, records, deleted):
        decisions = []
        for record in records:
            money = money_of(record)
            if money is None:
                decisions.append(Decision(record["payment_id"], PASS, "none", ["no money"]))
            elif money[1] < 10_000:
                decisions.append(Decision(record["payment_id"], APPLY, "small", money=money,
                                          send=lambda key=record["payment_id"], m=money: self._write(key, m)))
            else:
                decisions.append(Decision(record["payment_id"], HOLD, "large", ["too large"], row=record, money=money))
        decisions += [Decision(key, HOLD, "gone_after_applied", ["deleted after applied"]) if key in self.rows
                      else Decision(key, PASS, "gone", ["deleted"]) for key in deleted]
        return decisions

    def _write(self, key, money):
        if key in self.rows:
            return "unchanged"
        self.writes += 1
        if not self.lose:
            self.rows[key] = money
        return "created"


def record(key, amount, currency="RUB", posted=True, ref="cp"):
    return {"payment_id": key, "amount": amount, "currency": currency, "paid_on": "2026-11-14",
            "counterparty_ref": ref, "purpose": "", "posted": posted, "reference": ""}


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    feed, target = Feed(), Target()
    flow = ChangeFeedFlow(SPEC, feed=lambda _: feed, target=lambda _: target, money_of=money_of,
                          date_column="paid_on")
    return {"flow": flow, "feed": feed, "target": target, "ledger": Ledger.migrated(f"sqlite:///{tmp_path / 'l.db'}")}


def run(world, run_id):
    return world["flow"].run_all(run_id, None, None, world["ledger"])


def test_applied_held_passed_and_acknowledged_last(world):
    feed, target = world["feed"], world["target"]
    for change in (record("a", "10.00"), record("b", "20.50"), record("c", "500.00"), record("d", "1.00", posted=False),
                   record("e", "0"), record("f", "3.00", currency="TRY")):
        feed.change(change)
    summary = run(world, "r1")
    assert target.rows == {"a": ("RUB", 1000), "b": ("RUB", 2050), "f": ("TRY", 300)}
    assert feed.acknowledged == ["1"] and feed.pending == {}
    held = {q["source_key"]: q["reasons"] for q in world["ledger"].quarantined(flow=SPEC.id)}
    assert set(held) == {"c", "e"} and "amount" in held["e"]  # c by the target, e by the gate
    assert summary.counts_add_up() and summary.created == 3 and summary.quarantined == 2
    assert "money RUB: received 530.50 = applied 30.50 + held back 500.00" in summary.text()
    assert "money TRY: received 3.00 = applied 3.00 + held back 0.00" in summary.text()


def test_a_replay_is_decided_once_and_a_change_again(world):
    feed, target = world["feed"], world["target"]
    feed.change(record("a", "10.00"))
    feed.change(record("c", "500.00"))
    run(world, "r1")
    writes = target.writes
    feed.change(record("a", "10.00"))
    feed.change(record("c", "500.00"))
    replay = run(world, "r2")
    assert replay.unchanged == 2 and replay.quarantined == 0 and target.writes == writes
    feed.change(record("c", "50.00"))  # changed at the source: decided again, and now applied
    assert run(world, "r3").created == 1 and target.rows["c"] == ("RUB", 5000)


def test_a_target_that_does_not_hold_what_it_took_leaves_the_feed_unacknowledged(world):
    feed, target = world["feed"], world["target"]
    feed.change(record("a", "10.00"))
    target.lose = True
    with pytest.raises(ReconciliationError, match="applied but not in test target"):
        run(world, "r1")
    assert feed.acknowledged == [] and "a" in feed.pending  # the next run reads it again
    target.lose = False
    world["ledger"].forget(SPEC.id, ["a"])  # what the broken target acknowledged is not believed
    assert run(world, "r2").created == 1 and feed.acknowledged == ["2"]


def test_a_crash_before_acknowledging_applies_nothing_twice(world):
    feed, target, flow, ledger = world["feed"], world["target"], world["flow"], world["ledger"]
    feed.change(record("a", "10.00"))
    state = flow.load(flow.gate(flow.extract("crashed", None, ledger), ledger), None, ledger)
    assert state.outcomes.created == 1 and feed.acknowledged == []
    ledger.end_run_early("crashed", SPEC.id, "abandoned", "killed")
    writes = target.writes
    summary = run(world, "after")
    assert target.writes == writes and summary.created == 0 and feed.acknowledged == ["2"]
    assert exact_minor("10.00") == target.rows["a"][1]


def test_a_deletion_held_for_finance_is_held_once_across_a_crash(world):
    feed, flow, ledger = world["feed"], world["flow"], world["ledger"]
    feed.change(record("a", "10.00"))
    run(world, "r1")
    feed.delete("a")
    flow.load(flow.gate(flow.extract("crashed", None, ledger), ledger), None, ledger)
    ledger.end_run_early("crashed", SPEC.id, "abandoned", "killed")
    summary = run(world, "after")
    held = [q for q in ledger.quarantined(flow=SPEC.id) if q["source_key"] == "a"]
    assert len(held) == 1 and held[0]["run_id"] == "crashed" and summary.quarantined == 0
    assert feed.pending == {} and world["target"].rows == {"a": ("RUB", 1000)}


def run_with(world, run_id, params):
    """The four steps as the DAG runs them, with a manual trigger's params."""
    flow, ledger = world["flow"], world["ledger"]
    state = flow.extract(run_id, None, ledger, params=RunParams.of(params))
    state = flow.load(flow.gate(state, ledger), None, ledger)
    return flow.reconcile_and_report(state, None, None, ledger)


def test_a_dry_run_decides_writes_nothing_holds_nothing_and_acknowledges_nothing(world):
    feed, target = world["feed"], world["target"]
    feed.change(record("a", "10.00"))
    feed.change(record("c", "500.00"))
    summary = run_with(world, "dry", {"dry_run": True})
    assert summary.dry_run and target.writes == 0 and target.rows == {}
    assert feed.acknowledged == [] and world["ledger"].quarantined(flow=SPEC.id) == []
    assert "would decide: large 1, small 1" in summary.text()
    assert run(world, "r1").created == 1 and target.rows == {"a": ("RUB", 1000)}  # the full run does it all


def test_a_date_range_applies_its_part_and_leaves_the_feed_for_the_full_run(world):
    feed, target = world["feed"], world["target"]
    feed.change(record("a", "10.00"))
    feed.change({**record("b", "20.00"), "paid_on": "2026-11-20"})
    feed.delete("gone")
    summary = run_with(world, "part", {"from_date": "2026-11-20", "to_date": "2026-11-30"})
    assert target.rows == {"b": ("RUB", 2000)} and feed.acknowledged == []
    assert summary.deleted == 0 and "NOT acknowledged" in summary.text()
    full = run(world, "r1")  # everything again: b recognised, a applied, the deletion decided
    assert target.rows == {"a": ("RUB", 1000), "b": ("RUB", 2000)} and full.unchanged == 1
    assert feed.acknowledged and feed.pending == {}


def test_a_run_for_one_customer_is_refused_naming_what_to_use_instead(world):
    with pytest.raises(ConfigurationError, match="date range or a dry run"):
        run_with(world, "one", {"customer": "C000001"})
