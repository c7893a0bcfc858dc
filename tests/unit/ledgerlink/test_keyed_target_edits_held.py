"""The keyed framework's conflict policy ``target_edits_held``: a record is written only over the version we last
wrote; a record edited in the target since (a person's edit) is held back for finance with both values, never
overwritten, whether the edit is found by the load (the source changed too) or by the reconciliation.

The flow is declared in a copy of the real map (billing's customer e-mails to the CRM, with the flow's own
``conflict:``); its target is an in-process table that versions every write, as 1C's DataVersion does."""
from __future__ import annotations

import copy
import json
import sqlite3

import pytest
import sqlalchemy as sa
import yaml

from ledgerlink.billing.extract import read_customers
from ledgerlink.delivery import Written
from ledgerlink.errors import ExchangeMapError
from ledgerlink.exchange_map import DEFAULT_MAP_PATH, parse_exchange_map
from ledgerlink.flows.keyed import CONFLICT_POLICIES, KeyedFlow
from ledgerlink.flows.spec import declared
from ledgerlink.ledger import QUARANTINED, SUCCEEDED, Ledger
from sandbox.generator import generate_billing

FLOW_ID = "billing_customer_emails_to_crm"


class VersionedContacts:
    """One contact per key, each write giving it a new version; ``edit`` is a person's edit in the target."""

    system = "CRM"
    name = "CRM contacts"

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.counter = 0
        self.writes = 0
        self.seen_versions: list[str | None] = []

    def _version(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def target_key(self, customer_id: str) -> str:
        return f"contact-{customer_id}"

    def edit(self, key: str, **changes) -> None:
        self.rows[key].update(changes, version=self._version())

    def upsert(self, customer: dict, *, believed_new: bool, written_version: str | None = None):
        from ledgerlink.errors import HeldBack

        self.seen_versions.append(written_version)
        key = self.target_key(customer["customer_id"])
        current = self.rows.get(key)
        if current is not None and written_version is not None and current["version"] != written_version:
            raise HeldBack("customer", customer["customer_id"], ["edited in the CRM since we wrote it"],
                           {"email": {"CRM": current["email"], "billing": customer["email"]}})
        if current is not None and current["email"] == customer["email"]:
            return Written("unchanged", current["version"], f"GET {key}")
        self.writes += 1
        self.rows[key] = {"email": customer["email"], "active": True, "version": self._version()}
        return Written("updated" if current else "created", self.rows[key]["version"], f"PUT {key}")

    def mark_deleted(self, target_key: str, *, written_version: str | None = None):
        self.rows[target_key].update(active=False, version=self._version())
        return Written("deleted", self.rows[target_key]["version"], f"DELETE {target_key}")

    def read_ours(self, target_keys: set[str]) -> dict[str, dict]:
        return {key: row for key, row in self.rows.items() if row["active"]}

    def mismatches(self, customer: dict, held: dict) -> dict:
        return {} if held["email"] == customer["email"] else {"email": (held["email"], customer["email"])}


def _document(policy: dict | None) -> dict:
    document = copy.deepcopy(yaml.safe_load(DEFAULT_MAP_PATH.read_text(encoding="utf-8")))
    flow = {"id": FLOW_ID, "from": "billing", "to": "crm", "schedule": "@hourly", "mode": "api", "gate": "customer",
            "fields": ["email"], "status": "live"}
    if policy is not None:
        flow["conflict"] = policy
    document["entities"]["customer"]["flows"].append(flow)
    return document


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLINK_HOME", str(tmp_path / "home"))
    spec = declared(FLOW_ID, entity="customer", source="billing", target="crm", carries=("email",),
                    conflict_policies=CONFLICT_POLICIES,
                    exchange_map=parse_exchange_map(_document({"policy": "target_edits_held"})))
    contacts = VersionedContacts()
    generate_billing(tmp_path / "billing.db", seed=5, customers=6)
    flow = KeyedFlow(spec, read=lambda billing: read_customers(billing, None), target=lambda _: contacts)
    return {"flow": flow, "contacts": contacts, "db": tmp_path / "billing.db",
            "billing": sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}"),
            "ledger": Ledger.migrated(f"sqlite:///{tmp_path / 'ledger.db'}")}


def _run(world, run_id: str):
    return world["flow"].run_all(run_id, world["billing"], None, world["ledger"])


def _first_customer(world) -> str:
    return sorted(read_customers(world["billing"], None)["customer_id"])[0]


def test_the_policy_is_a_flows_own_in_the_map_and_refused_where_the_flow_cannot_apply_it():
    document = _document({"policy": "target_edits_held"})
    exchange_map = parse_exchange_map(document)
    assert exchange_map.flow(FLOW_ID).conflict_policy == "target_edits_held"
    assert exchange_map.flow("billing_customers_to_onec").conflict_policy is None  # the entity's, master wins
    with pytest.raises(ExchangeMapError, match="can apply"):
        declared(FLOW_ID, entity="customer", source="billing", target="crm", carries=("email",),
                 exchange_map=exchange_map)  # a flow that can only let the master win
    with pytest.raises(ExchangeMapError, match="conflict.policy"):
        parse_exchange_map(_document({"policy": "target_wins_sometimes"}))


def test_the_version_we_wrote_is_handed_back_and_an_unchanged_rerun_writes_nothing(world):
    first = _run(world, "run-1")
    assert first.created == 6 and first.counts_add_up()
    assert world["contacts"].seen_versions == [None] * 6
    items = world["ledger"].items(flow=FLOW_ID, run_id="run-1")
    assert all(i["target_version"] and i["request"].startswith("PUT ") for i in items)
    customer = _first_customer(world)
    with sqlite3.connect(world["db"]) as db:
        db.execute("UPDATE customers SET email = 'a@example.com', updated_at = '2030-01-01T00:00:00+00:00' "
                   "WHERE customer_id = ?", (customer,))
    key = f"contact-{customer}"
    version_written = world["contacts"].rows[key]["version"]
    second = _run(world, "run-2")
    assert second.updated == 1 and world["contacts"].seen_versions[-1] == version_written
    assert _run(world, "run-3").sent == 0


def test_a_change_over_a_target_edit_is_held_back_with_both_values_never_overwritten(world):
    _run(world, "run-1")
    customer = _first_customer(world)
    key = f"contact-{customer}"
    world["contacts"].edit(key, email="typed.by.hand@example.com")
    with sqlite3.connect(world["db"]) as db:
        db.execute("UPDATE customers SET email = 'billing.new@example.com', updated_at = '2030-01-01T00:00:00+00:00' "
                   "WHERE customer_id = ?", (customer,))
    summary = _run(world, "run-2")
    assert world["contacts"].rows[key]["email"] == "typed.by.hand@example.com", "never overwritten"
    assert summary.quarantined == 1 and summary.updated == 0 and summary.counts_add_up()
    assert world["ledger"].runs(flow=FLOW_ID)[-1]["status"] == SUCCEEDED  # held back is not a failure
    (held,) = world["ledger"].quarantined(flow=FLOW_ID, run_id="run-2")
    assert held["source_key"] == customer and "edited in the CRM" in held["reasons"]
    assert json.loads(held["row"])["email"] == {"CRM": "typed.by.hand@example.com",
                                                "billing": "billing.new@example.com"}
    (item,) = [i for i in world["ledger"].items(flow=FLOW_ID, run_id="run-2") if i["source_key"] == customer]
    assert item["status"] == QUARANTINED
    # Still held on the next run: the edit is finance's to resolve, not the flow's to overwrite.
    assert _run(world, "run-3").quarantined == 1
    assert world["contacts"].rows[key]["email"] == "typed.by.hand@example.com"


def test_a_target_edit_found_by_the_reconciliation_is_held_for_finance_not_sent_again(world):
    _run(world, "run-1")
    customer = _first_customer(world)
    key = f"contact-{customer}"
    world["contacts"].edit(key, email="typed.by.hand@example.com")
    writes = world["contacts"].writes
    summary = _run(world, "run-2")  # billing did not change: only the reconciliation sees the edit
    assert summary.reconciliation == [] and world["contacts"].writes == writes
    (held,) = world["ledger"].quarantined(flow=FLOW_ID, run_id="run-2")
    assert held["source_key"] == customer
    assert json.loads(held["row"])["email"]["CRM"] == "typed.by.hand@example.com"
    _run(world, "run-3")
    assert world["contacts"].rows[key]["email"] == "typed.by.hand@example.com" and world["contacts"].writes == writes
