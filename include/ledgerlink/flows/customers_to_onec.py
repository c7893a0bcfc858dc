"""Billing customers → 1C counterparties over OData (flow ``billing_customers_to_onec``).

What is this flow's own: its spec (checked against the exchange map), billing's reader, and the target adapter
below; the lifecycle is :class:`~ledgerlink.flows.keyed.KeyedFlow`'s.
"""
from __future__ import annotations

from ledgerlink import tasks
from ledgerlink.billing.extract import read_customers
from ledgerlink.flows.keyed import KeyedFlow
from ledgerlink.flows.spec import declared
from ledgerlink.loads.http import ALREADY_GONE, UNCHANGED
from ledgerlink.onec import counterparties
from ledgerlink.onec.client import ODataClient

SPEC = declared("billing_customers_to_onec", entity="customer", source="billing", target="onec",
                carries=counterparties.CARRIED)


class CounterpartiesIn1C:
    """1C's ``Catalog_Контрагенты`` as this flow's target (the mapping itself: ``onec.counterparties``)."""

    system = "1C"
    name = f"1C {counterparties.ENTITY_SET}"

    def __init__(self, client: ODataClient):
        self.client = client

    def target_key(self, customer_id: str) -> str:
        return counterparties.ref_key(customer_id)

    def upsert(self, customer: dict, *, believed_new: bool) -> str:
        outcome, _ = counterparties.upsert_counterparty(self.client, customer, believed_new=believed_new)
        return outcome

    def mark_deleted(self, ref_key: str) -> str:
        # A counterparty 1C no longer has is, for this change, already as billing wants it.
        outcome = counterparties.mark_deleted(self.client, ref_key)
        return UNCHANGED if outcome == ALREADY_GONE else outcome

    def read_ours(self, ref_keys: set[str]) -> dict[str, dict]:
        held = counterparties.read_ours(self.client, ref_keys)
        return {} if held.empty else {row["Ref_Key"]: row for row in held.to_dict("records")
                                      if row.get("DeletionMark") != True}  # noqa: E712 - numpy bools too

    def mismatches(self, customer: dict, held: dict) -> dict[str, tuple[object, object]]:
        expected = counterparties.to_counterparty(customer)
        return {field: (held.get(field), value)
                for field, value in counterparties.content_mismatches(expected, held).items()}


COUNTERPARTY_FLOW = KeyedFlow(SPEC, read=lambda billing: read_customers(billing, None), target=CounterpartiesIn1C)
FLOW = SPEC.id
WATERMARK = COUNTERPARTY_FLOW.watermark
extract, gate, load = COUNTERPARTY_FLOW.extract, COUNTERPARTY_FLOW.gate, COUNTERPARTY_FLOW.load
reconcile_and_report, run_all = COUNTERPARTY_FLOW.reconcile_and_report, COUNTERPARTY_FLOW.run_all
# The four Airflow tasks (ledgerlink.spine), each opening the connections it needs.
STEPS = COUNTERPARTY_FLOW.steps(source=tasks.billing_engine, target=tasks.onec_client)
