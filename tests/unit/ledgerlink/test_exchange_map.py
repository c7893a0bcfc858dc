"""The exchange map: the real one loads; malformed ones are refused naming the entity and key at fault."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from ledgerlink import cli
from ledgerlink.errors import ExchangeMapError
from ledgerlink.exchange_map import DEFAULT_MAP_PATH, load_exchange_map, map_table, parse_exchange_map


@pytest.fixture
def document() -> dict:
    return yaml.safe_load(DEFAULT_MAP_PATH.read_text(encoding="utf-8"))


def test_the_shipped_map_is_valid_and_has_one_master_per_entity(document):
    exchange_map = load_exchange_map()
    assert set(exchange_map.entities) == set(document["entities"])
    assert exchange_map.entities["payment"].master == "onec"
    assert exchange_map.flow("billing_customers_to_onec").target == "onec"
    assert {row["status"] for row in map_table(exchange_map)} == {"live", "planned"}


def _refused(document: dict) -> ExchangeMapError:
    with pytest.raises(ExchangeMapError) as caught:
        parse_exchange_map(document)
    return caught.value


def test_unknown_system_is_refused(document):
    broken = copy.deepcopy(document)
    broken["entities"]["invoice"]["flows"][0]["to"] = "sap"
    error = _refused(broken)
    assert (error.entity, error.key) == ("invoice", "flows[0].to")
    assert "'sap'" in str(error)


def test_two_masters_for_one_field_are_refused(document):
    broken = copy.deepcopy(document)
    broken["entities"]["customer"]["fields"]["email"] = ["billing", "crm"]
    error = _refused(broken)
    assert (error.entity, error.key) == ("customer", "fields.email")
    assert "two masters" in str(error)


def test_the_same_field_mastered_in_two_entities_is_refused(document):
    broken = copy.deepcopy(document)
    broken["entities"]["customer_copy"] = copy.deepcopy(broken["entities"]["customer"])
    broken["entities"]["customer_copy"]["record"] = "customer"
    broken["entities"]["customer_copy"]["fields"]["email"] = "crm"
    broken["entities"]["customer_copy"]["fields"]["segment"] = "crm"
    for flow in broken["entities"]["customer_copy"]["flows"]:
        flow["id"] += "_copy"
    error = _refused(broken)
    assert error.entity == "customer_copy" and error.key == "fields.email"
    assert "'billing'" in str(error) and "'customer'" in str(error)


def test_a_flow_from_a_non_master_is_refused(document):
    broken = copy.deepcopy(document)
    broken["entities"]["payment"]["flows"][0]["from"] = "billing"
    broken["entities"]["payment"]["flows"][0]["to"] = "onec"
    error = _refused(broken)
    assert (error.entity, error.key) == ("payment", "flows[0].from")
    assert "not its master" in str(error)


def test_a_relay_from_a_system_the_master_feeds_is_allowed(document):
    # billing -> onec carries ERP-mastered fields because erp -> billing feeds billing first.
    assert parse_exchange_map(document).flow("billing_customers_to_onec").source == "billing"
    broken = copy.deepcopy(document)
    broken["entities"]["customer"]["flows"] = [f for f in broken["entities"]["customer"]["flows"]
                                               if f["id"] != "erp_customers_to_billing"]
    error = _refused(broken)
    assert error.key.endswith(".from") and "'legal_name'" in str(error)


def test_a_schedule_that_does_not_parse_is_refused(document):
    broken = copy.deepcopy(document)
    broken["entities"]["invoice_line"]["flows"][0]["schedule"] = "every night at two"
    error = _refused(broken)
    assert (error.entity, error.key) == ("invoice_line", "flows[0].schedule")


def test_a_key_given_twice_in_the_file_is_refused(tmp_path):
    text = DEFAULT_MAP_PATH.read_text(encoding="utf-8").replace(
        "    master: crm\n    key: [contract_id", "    master: crm\n    master: erp\n    key: [contract_id", 1)
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ExchangeMapError, match="'master' given twice"):
        load_exchange_map(path)


def test_last_change_wins_needs_a_timestamp_field(document):
    broken = copy.deepcopy(document)
    broken["entities"]["order"]["conflict"] = {"policy": "last_change_wins"}
    assert _refused(broken).key == "conflict.timestamp_field"


def test_cli_prints_the_map(capsys):
    assert cli.main(["map"]) == 0
    out = capsys.readouterr().out
    assert "billing_customers_to_onec" in out and "billing -> onec" in out
    assert cli.main(["map", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["flow"] == "billing_invoice_lines_to_erp" and r["mode"] == "sql" for r in rows)


def test_a_gate_suite_that_does_not_exist_is_refused(document):
    broken = copy.deepcopy(document)
    flow = next(f for f in broken["entities"]["customer"]["flows"] if f["id"] == "billing_customers_to_onec")
    flow["gate"] = "customers"  # the suite is called "customer"
    error = _refused(broken)
    assert error.entity == "customer" and error.key.endswith(".gate") and "'customer'" in str(error)
