"""The keyed-record framework: a new flow is its spec, its reader and its target adapter, and gets the whole
lifecycle (change tracking on exactly the map's fields, deletions, refusals, reconciliation, master wins).

The flow here is declared in a copy of the real map (billing's customer e-mails to the CRM); its target is a
plain in-process table written for this test, so that what is tested is the framework, not a connector (the
connectors' own flows run against the stand-ins in tests/integration)."""
from __future__ import annotations

import copy
import sqlite3

import pytest
import sqlalchemy as sa
import yaml

from ledgerlink.billing.extract import read_customers
from ledgerlink.errors import ReconciliationError, RemoteRejected, TerminalError
from ledgerlink.exchange_map import DEFAULT_MAP_PATH, parse_exchange_map
from ledgerlink.flows.keyed import KeyedFlow
from ledgerlink.flows.spec import declared
from ledgerlink.ledger import ACKNOWLEDGED, FAILED, REJECTED, SUCCEEDED, Ledger
from sandbox.generator import generate_billing

FLOW_ID = "billing_customer_emails_to_crm"


class ContactTable:
    """A target keeping one contact per key; refuses the keys in ``refuse`` as a business error would."""

    system = "CRM"
    name = "CRM contacts"

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.writes = 0
        self.refuse: set[str] = set()

    def target_key(self, customer_id: str) -> str:
        return f"contact-{customer_id}"

    def upsert(self, customer: dict, *, believed_new: bool) -> str:
        key = self.target_key(customer["customer_id"])
        if customer["customer_id"] in self.refuse:
            raise RemoteRejected("CRM", 422, "invalid", f"contact {key} refused")
        wanted = {"email": customer["email"], "active": True}
        if self.rows.get(key) == wanted:
            return "unchanged"
        self.writes += 1
        outcome = "updated" if key in self.rows else "created"
        self.rows[key] = wanted
        return outcome

    def mark_deleted(self, target_key: str) -> str:
        self.writes += 1
        self.rows[target_key]["active"] = False
        return "deleted"

    def read_ours(self, target_keys: set[str]) -> dict[str, dict]:
        return {key: row for key, row in self.rows.items() if row["active"]}

    def mismatches(self, customer: dict, held: dict) -> dict:
        return {} if held["email"] == customer["email"] else {"email": (held["email"], customer["email"])}


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    document = yaml.safe_load(DEFAULT_MAP_PATH.read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    document["entities"]["customer"]["flows"].append(
        {"id": FLOW_ID, "from": "billing", "to": "crm", "schedule": "@hourly", "mode": "api", "gate": "customer",
         "fields": ["email"], "status": "live"})
    spec = declared(FLOW_ID, entity="customer", source="billing", target="crm", carries=("email",),
                    exchange_map=parse_exchange_map(document))
    contacts = ContactTable()
    generate_billing(tmp_path / "billing.db", seed=5, customers=8)
    flow = KeyedFlow(spec, read=lambda billing: read_customers(billing, None), target=lambda _: contacts)
    return {"flow": flow, "contacts": contacts, "db": tmp_path / "billing.db",
            "billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "ledger": Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")}


def _run(world, run_id: str):
    return world["flow"].run_all(run_id, world["billing"], None, world["ledger"])


def _billing(world, sql: str, *params) -> None:
    with sqlite3.connect(world["db"]) as db:
        db.execute(sql, params)


def test_a_new_flow_gets_the_whole_lifecycle_from_spec_reader_and_adapter(world):
    first = _run(world, "run-1")
    customers = len(world["contacts"].rows)
    assert customers == 8 and first.created == 8 and first.counts_add_up()
    assert world["ledger"].runs(flow=FLOW_ID)[0]["status"] == SUCCEEDED
    writes = world["contacts"].writes
    assert _run(world, "run-2").sent == 0 and world["contacts"].writes == writes, "a rerun sends nothing"


def test_the_hash_covers_exactly_the_fields_the_map_gives_the_flow(world):
    _run(world, "run-1")
    writes = world["contacts"].writes
    _billing(world, "UPDATE customers SET legal_name = 'Renamed Ltd' WHERE customer_id = "
                    "(SELECT min(customer_id) FROM customers)")
    assert _run(world, "run-2").sent == 0 and world["contacts"].writes == writes, "a name is not this flow's"
    _billing(world, "UPDATE customers SET email = 'new@example.com' WHERE customer_id = "
                    "(SELECT min(customer_id) FROM customers)")
    summary = _run(world, "run-3")
    assert (summary.updated, summary.sent) == (1, 1)
    assert "new@example.com" in [row["email"] for row in world["contacts"].rows.values()]


def test_a_deleted_source_record_is_marked_deleted_in_the_target(world):
    _run(world, "run-1")
    with sqlite3.connect(world["db"]) as db:
        (gone,) = db.execute("SELECT max(customer_id) FROM customers").fetchone()
        db.execute("DELETE FROM invoice_lines WHERE invoice_id IN (SELECT invoice_id FROM invoices "
                   "WHERE customer_id = ?)", (gone,))
        db.execute("DELETE FROM invoices WHERE customer_id = ?", (gone,))
        db.execute("DELETE FROM customers WHERE customer_id = ?", (gone,))
    summary = _run(world, "run-2")
    assert summary.deleted == 1 and world["contacts"].rows[f"contact-{gone}"]["active"] is False


def test_a_refused_record_fails_the_run_naming_it_and_the_next_run_sends_it(world):
    refused = sorted(read_customers(world["billing"], None)["customer_id"])[0]
    world["contacts"].refuse = {refused}
    with pytest.raises(TerminalError) as failure:
        _run(world, "run-1")
    assert refused in str(failure.value) and "CRM contacts refused 1 customer record(s)" in str(failure.value)
    assert world["ledger"].runs(flow=FLOW_ID)[0]["status"] == FAILED
    statuses = {i["source_key"]: i["status"] for i in world["ledger"].items(flow=FLOW_ID, run_id="run-1")}
    assert statuses[refused] == REJECTED and list(statuses.values()).count(ACKNOWLEDGED) == 7
    world["contacts"].refuse = set()
    assert _run(world, "run-2").created == 1


def test_a_record_changed_in_the_target_is_named_with_both_values_and_the_master_wins(world):
    _run(world, "run-1")
    key = sorted(world["contacts"].rows)[0]
    original = world["contacts"].rows[key]["email"]
    world["contacts"].rows[key]["email"] = "edited-in-crm@example.com"
    with pytest.raises(ReconciliationError) as caught:
        _run(world, "run-2")
    message = str(caught.value)
    assert "CRM differs in ['email']" in message and "'edited-in-crm@example.com'" in message
    assert repr(original) in message and "the next run re-sends 1 customer(s) to CRM" in message
    assert _run(world, "run-3").updated == 1 and world["contacts"].rows[key]["email"] == original


def test_customer_codes_spelled_two_ways_are_all_held_back_and_the_rest_travels(world):
    """1C compares counterparty codes without case and trims them: "c0001" beside "C0001" would be one code."""
    with sqlite3.connect(world["db"]) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(customers)")]
        first = sorted(k for (k,) in db.execute("SELECT customer_id FROM customers"))[0]
        for twin in (first.lower(), first + " "):
            db.execute(f"INSERT INTO customers SELECT {', '.join('?' if c == 'customer_id' else c for c in columns)} "
                       f"FROM customers WHERE customer_id = ?", (twin, first))
    summary = _run(world, "run-1")
    held = {row["key"]: row["reasons"] for row in summary.held_back}
    assert set(held) == {first, first.lower(), first + " "}, "every spelling held back, none chosen"
    assert "customer id not spelled two ways (case or spaces) in billing" in str(held[first])
    assert "customer id without leading or trailing spaces" in str(held[first + " "])
    assert summary.created == 7 and summary.quarantined == 3 and summary.counts_add_up()
