"""Billing's issued invoices → 1C sales documents and VAT invoices over OData (flow ``billing_invoices_to_onec``).

What is this flow's own: its spec (checked against the exchange map, conflict policy ``target_edits_held``
included), billing's reader (``billing.invoices``) and the target adapter below; the mapping and the writes are
``onec.documents``'s, the lifecycle :class:`~ledgerlink.flows.keyed.KeyedFlow`'s.

* One invoice is one record: its sale (with ``Услуги``) and VAT invoice, both posted. Their contract and
  nomenclature items are written first (``prepare``), by derived key.
* A counterparty not in 1C yet (``billing_customers_to_onec`` runs hourly; it may also hold a customer back) is
  not created here: that flow owns the counterparty and its mapping. The invoice is held back naming it, and a
  later run sends it once the counterparty is there (held-back records stay changes until acknowledged).
* A cancelled invoice leaves billing's issued set: change tracking sees a deletion, and the adapter unposts its
  documents and marks them for deletion, never deleting them.
* An edit an accountant made in 1C is never overwritten: the change is held back, with both values.
"""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from ledgerlink import tasks
from ledgerlink.billing.invoices import read_issued_invoices
from ledgerlink.delivery import Written
from ledgerlink.flows.keyed import CONFLICT_POLICIES, KeyedFlow
from ledgerlink.flows.spec import declared
from ledgerlink.onec import documents
from ledgerlink.onec.client import ODataClient

CARRIED = ("number", "customer_id", "contract_id", "issue_date", "currency", "net_minor", "vat_minor", "gross_minor",
           "lines")
SPEC = declared("billing_invoices_to_onec", entity="invoice", source="billing", target="onec", carries=CARRIED,
                conflict_policies=CONFLICT_POLICIES)
SHOWN = 10


class InvoicesIn1C:
    """1C's sales documents and VAT invoices as this flow's target; the target key is the sale's Ref_Key."""

    system = "1C"
    name = f"1C {documents.SALES} + {documents.VAT_INVOICES}"

    def __init__(self, client: ODataClient):
        self.client = client
        self.documents = documents.InvoiceDocuments(client)
        self._pairs: dict[str, tuple[dict, dict | None]] = {}

    def target_key(self, invoice_id: str) -> str:
        return documents.sale_key(invoice_id)

    def prepare(self, invoices: list[dict]) -> None:
        self.documents.prepare(invoices)

    def upsert(self, invoice: dict, *, believed_new: bool, written_version: str | None = None) -> Written:
        return Written(*self.documents.upsert(invoice, believed_new=believed_new, written_version=written_version))

    def mark_deleted(self, sale_ref: str, *, written_version: str | None = None) -> Written:
        return Written(*self.documents.cancel(sale_ref, written_version=written_version))

    def read_ours(self, sale_refs: set[str]) -> dict[str, dict]:
        """The pairs 1C holds active (the sale not marked for deletion), as compared views."""
        self._pairs = self.documents.read_pairs(sale_refs)
        return {ref: documents.view(sale, vat) for ref, (sale, vat) in self._pairs.items()
                if not sale.get("DeletionMark")}

    def mismatches(self, invoice: dict, held: dict) -> dict[str, tuple[object, object]]:
        refs = documents.base_references(self.client)
        expected = documents.view(documents.to_sale(invoice, refs), documents.to_vat_invoice(invoice, refs),
                                  posted=True)
        return documents.differences(expected, held)

    def reconcile(self, invoices: list[dict], held_keys: set[str]) -> tuple[list[str], list[dict], list[dict]]:
        """Across documents: per period (month of issue), currency and VAT rate, the net and VAT of the posted
        sales equal billing's to the kopek; every invoice (not held back) has exactly one posted sale and one
        posted VAT invoice based on it."""
        differences: list[str] = []
        expected = [i for i in invoices if i["invoice_id"] not in held_keys]
        # By period (month of issue), currency and VAT rate: a document dated in the wrong month is a difference.
        billing_totals: dict[tuple[str, str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for invoice in expected:
            for line in documents.lines_of(invoice):
                row = billing_totals[(str(invoice["issue_date"])[:7], str(invoice["currency"]), str(line["vat_rate"]))]
                row[0] += documents.money(line["net_minor"])
                row[1] += documents.money(line["vat_minor"])
        refs = {documents.sale_key(i["invoice_id"]): i for i in expected}
        pairs = {ref: self._pairs.get(ref) for ref in refs}
        counted = self.documents.vat_invoices_based_on(set(refs)) if refs else {}
        not_posted, vat_count = [], []
        for ref, invoice in refs.items():
            sale, vat = pairs[ref] or (None, None)
            if sale is None or not sale.get("Posted") or sale.get("DeletionMark") or vat is None \
                    or not vat.get("Posted") or vat.get("DeletionMark"):
                not_posted.append(invoice["number"])
            if counted.get(ref, 0) != 1:
                vat_count.append(f"{invoice['number']}: {counted.get(ref, 0)}")
        if not_posted:
            differences.append(f"{len(not_posted)} invoice(s) without a posted sale and posted VAT invoice in 1C: "
                               f"{not_posted[:SHOWN]}")
        if vat_count:
            differences.append(f"{len(vat_count)} invoice(s) without exactly one VAT invoice in 1C: "
                               f"{vat_count[:SHOWN]}")
        base = documents.base_references(self.client)
        onec_totals = documents.totals([pairs[ref][0] for ref in refs if pairs[ref] and pairs[ref][0].get("Posted")
                                        and not pairs[ref][0].get("DeletionMark")], base.okv_by_ref)
        for period, currency, rate in sorted(set(billing_totals) | set(onec_totals)):
            ours = billing_totals.get((period, currency, rate), [Decimal(0), Decimal(0)])
            theirs = onec_totals.get((period, currency, rate), (Decimal(0), Decimal(0)))
            if (ours[0], ours[1]) != (theirs[0], theirs[1]):
                differences.append(f"{period} {currency} VAT {rate}%: billing net {ours[0]} VAT {ours[1]}, 1C net "
                                   f"{theirs[0]} VAT {theirs[1]}")
        source_rows, target_rows = _by_currency_and_rate(billing_totals), _by_currency_and_rate(onec_totals)
        return differences, source_rows, target_rows


def _by_currency_and_rate(totals: dict) -> list[dict]:
    """The workbook's rows: net, VAT and gross per currency and VAT rate, all periods together."""
    summed: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for (_, currency, rate), (net, vat) in totals.items():
        summed[(currency, rate)][0] += net
        summed[(currency, rate)][1] += vat
    return [{"currency": currency, "vat_rate": rate, "net": net, "vat": vat, "gross": net + vat}
            for (currency, rate), (net, vat) in sorted(summed.items())]


INVOICE_FLOW = KeyedFlow(SPEC, read=read_issued_invoices, target=InvoicesIn1C)
FLOW = SPEC.id
extract, gate, load = INVOICE_FLOW.extract, INVOICE_FLOW.gate, INVOICE_FLOW.load
reconcile_and_report, run_all = INVOICE_FLOW.reconcile_and_report, INVOICE_FLOW.run_all
# The four Airflow tasks (ledgerlink.spine), each opening the connections it needs.
STEPS = INVOICE_FLOW.steps(source=tasks.billing_engine, target=tasks.onec_client)
