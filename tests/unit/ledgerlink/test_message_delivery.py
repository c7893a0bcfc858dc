"""MessageDelivery: many items in one numbered message, acknowledged later by the receiver's ReceivedNo; what is
not confirmed is carried by the next message, what is confirmed never again unless it changes."""
from __future__ import annotations

import pytest

from ledgerlink.delivery import MessageDelivery
from ledgerlink.ledger import CREATE, UPDATE, Ledger, PlannedChange

FLOW = "messages_flow"


@pytest.fixture()
def ledger(tmp_path):
    return Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")


def delivery(ledger, run: str) -> MessageDelivery:
    ledger.start_run(run, FLOW)
    return MessageDelivery(ledger, flow=FLOW, run_id=run, target="onec_files", entity="invoice")


def changes(ledger, contents: dict[str, str]) -> list[PlannedChange]:
    """Change tracking as a flow does it: what differs from the acknowledged snapshot."""
    acknowledged = ledger.snapshot_hashes(FLOW, list(contents))
    return [PlannedChange(k, f"ref-{k}", h, UPDATE if k in acknowledged else CREATE)
            for k, h in contents.items() if acknowledged.get(k) != h]


def send(ledger, run: str, contents: dict[str, str]) -> tuple[int, list[str], MessageDelivery]:
    d = delivery(ledger, run)
    to_send = d.open(changes(ledger, contents))
    number = d.next_message_no()
    if to_send:
        d.send(number, to_send, lambda: None)
    ledger.finish_run(run, FLOW, "succeeded", {})
    return number, [c.source_key for c in to_send], d


def statuses(ledger) -> dict[str, tuple[str, int]]:
    return {i["source_key"]: (i["status"], i["message_no"]) for i in ledger.items(flow=FLOW)
            if i["status"] != "rejected"}


def test_unconfirmed_items_ride_the_next_message_and_a_confirmation_closes_them(ledger):
    number, sent, _ = send(ledger, "r1", {"a": "1", "b": "1"})
    assert (number, sent) == (1, ["a", "b"])
    number, sent, d = send(ledger, "r2", {"a": "1", "b": "1", "c": "1"})
    assert (number, sent, d.resent) == (2, ["a", "b", "c"], 2)
    assert statuses(ledger) == {"a": ("sent", 2), "b": ("sent", 2), "c": ("sent", 2)}

    d = delivery(ledger, "r3")
    assert d.acknowledge_up_to(1) == 0, "message 1's items were carried again by message 2: they wait for it"
    assert d.acknowledge_up_to(2) == 3
    assert d.acknowledge_up_to(2) == 0, "an answer read twice acknowledges nothing twice"
    assert ledger.snapshot_hashes(FLOW, ["a", "b", "c"]) == {"a": "1", "b": "1", "c": "1"}
    ledger.finish_run("r3", FLOW, "succeeded", {})

    number, sent, _ = send(ledger, "r4", {"a": "1", "b": "2", "c": "1"})
    assert (number, sent) == (3, ["b"]), "what was confirmed goes again only when it changed"
    assert [i["operation"] for i in ledger.items(flow=FLOW) if i["message_no"] == 3] == [UPDATE]


def test_an_item_changed_back_before_its_confirmation_is_closed_not_sent(ledger):
    send(ledger, "r1", {"a": "1"})
    d = delivery(ledger, "r2")
    d.acknowledge_up_to(1)
    ledger.finish_run("r2", FLOW, "succeeded", {})
    send(ledger, "r3", {"a": "2"})  # changed, sent in message 2, not confirmed
    number, sent, _ = send(ledger, "r4", {"a": "1"})  # changed back to what 1C acknowledged
    assert sent == [] and statuses(ledger) == {"a": ("acknowledged", 1)}


def test_a_failed_delivery_leaves_the_items_open_with_the_error(ledger):
    d = delivery(ledger, "r1")
    to_send = d.open(changes(ledger, {"a": "1"}))

    def broken():
        raise OSError("connection lost")

    with pytest.raises(OSError):
        d.send(1, to_send, broken)
    [item] = ledger.items(flow=FLOW)
    assert (item["status"], item["message_no"]) == ("sent", 1) and "message 1: connection lost" in item["last_error"]
    assert d.next_message_no() == 2, "a number is never given twice"
