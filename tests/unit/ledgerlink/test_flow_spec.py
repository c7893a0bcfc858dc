"""Flow specs: the exchange map declares each flow; a flow whose code disagrees with it is refused when loaded."""
from __future__ import annotations

import copy

import pytest
import yaml

from ledgerlink.errors import ExchangeMapError
from ledgerlink.exchange_map import DEFAULT_MAP_PATH, parse_exchange_map
from ledgerlink.flows.spec import declared, spec_of

CUSTOMER_FIELDS = ("legal_name", "country", "entity_kind", "tax_id", "kpp", "address", "city")


@pytest.fixture
def document() -> dict:
    return yaml.safe_load(DEFAULT_MAP_PATH.read_text(encoding="utf-8"))


def _customer_flow(document: dict) -> dict:
    return next(f for f in document["entities"]["customer"]["flows"] if f["id"] == "billing_customers_to_onec")


def test_the_live_flows_hash_exactly_what_the_map_says_they_carry():
    from ledgerlink.erp import invoice_lines as erp_lines
    from ledgerlink.flows import customers_to_onec, invoice_lines_to_erp

    assert customers_to_onec.SPEC.content_columns == ["customer_id", *CUSTOMER_FIELDS]
    assert invoice_lines_to_erp.SPEC.content_columns == [c for c in erp_lines.COLUMNS if c != "content_hash"]
    assert invoice_lines_to_erp.CONTENT_COLUMNS == invoice_lines_to_erp.SPEC.content_columns
    assert (customers_to_onec.SPEC.gate, invoice_lines_to_erp.SPEC.gate) == ("customer", "invoice_line")


def test_a_field_the_map_does_not_give_the_flow_is_refused_naming_entity_and_field(document):
    exchange_map = parse_exchange_map(document)
    with pytest.raises(ExchangeMapError) as caught:
        declared("billing_customers_to_onec", entity="customer", source="billing", target="onec",
                 carries=(*CUSTOMER_FIELDS, "email"), exchange_map=exchange_map)
    assert (caught.value.entity, caught.value.key) == ("customer", "fields.email")


def test_a_field_the_map_gives_but_the_code_does_not_carry_is_refused(document):
    with pytest.raises(ExchangeMapError) as caught:
        declared("billing_customers_to_onec", entity="customer", source="billing", target="onec",
                 carries=CUSTOMER_FIELDS[:-1], exchange_map=parse_exchange_map(document))
    assert (caught.value.entity, caught.value.key) == ("customer", "fields.city")


def test_a_source_that_is_not_the_fields_master_is_refused_when_the_map_loads(document):
    broken = copy.deepcopy(document)
    broken["entities"]["customer"]["fields"]["city"] = "crm"  # city's master is now the CRM; nothing relays it
    with pytest.raises(ExchangeMapError) as caught:
        parse_exchange_map(broken)
    assert caught.value.entity == "customer" and "'city'" in str(caught.value) and "master" in str(caught.value)


def test_code_reading_another_system_than_the_map_says_is_refused(document):
    with pytest.raises(ExchangeMapError) as caught:
        declared("billing_customers_to_onec", entity="customer", source="erp", target="onec",
                 carries=CUSTOMER_FIELDS, exchange_map=parse_exchange_map(document))
    assert caught.value.key == "flow billing_customers_to_onec.from"


def test_a_conflict_policy_the_target_cannot_apply_is_refused(document):
    changed = copy.deepcopy(document)
    changed["entities"]["customer"]["conflict"] = {"policy": "last_change_wins", "timestamp_field": "updated_at"}
    with pytest.raises(ExchangeMapError) as caught:
        declared("billing_customers_to_onec", entity="customer", source="billing", target="onec",
                 carries=CUSTOMER_FIELDS, exchange_map=parse_exchange_map(changed))
    assert caught.value.key == "conflict.policy"


def test_an_unknown_flow_id_is_refused():
    with pytest.raises(ExchangeMapError, match="no flow with this id"):
        spec_of("billing_invoices_to_mars")


def test_the_dag_takes_schedule_tags_and_documentation_from_the_map(document):
    spec = spec_of("billing_invoice_lines_to_erp")
    doc = spec.doc_md("Prose of the DAG file.")
    assert spec.schedule == "0 2 * * *" and spec.tags == ["ledgerlink", "billing", "erp", "invoice_line", "sql"]
    assert doc.startswith("### Billing invoice lines") and "`net_minor`" in doc and doc.endswith("Prose of the DAG file.")
