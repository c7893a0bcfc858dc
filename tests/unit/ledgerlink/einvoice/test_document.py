"""UBL-TR documents: built in Decimal from billing's records, checked structurally, refused naming the field."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from lxml import etree

from ledgerlink.einvoice.document import (CBC, NS, DocumentError, Party, build_ubl, document_from_records,
                                          ettn_for, structural_problems)

SUPPLIER = Party(tax_id="1234567890", name="Ledgerlink Demo A.Ş.", street="Büyükdere Cd. No:1", city="İstanbul",
                 tax_office="Boğaziçi")
HEADER = {"invoice_id": "IN00000001", "issue_date": "2026-09-01", "period_start": "2026-08-01",
          "period_end": "2026-08-31", "currency": "TRY", "tax_id": "4549617050", "legal_name": "Toros Sağlık A.Ş.",
          "address": "Menekşe Sk. No:159, Antalya", "city": "Antalya"}
LINES = [{"line_no": 1, "description": "Video konferans HD", "quantity": "58.3", "unit_price_minor": 150,
          "net_minor": 8745, "vat_rate": "20", "vat_minor": 1749},
         {"line_no": 2, "description": "Sesli konferans", "quantity": "1629.5", "unit_price_minor": 60,
          "net_minor": 97770, "vat_rate": "20", "vat_minor": 19554},
         {"line_no": 3, "description": "Kayıt", "quantity": "10", "unit_price_minor": 333, "net_minor": 3330,
          "vat_rate": "10", "vat_minor": 333}]


def _document(**changes):
    values = {"supplier": SUPPLIER, "number": "EFA2026000000001", "ettn": ettn_for("1234567890", "IN00000001"),
              "profile": "TEMELFATURA", "type_code": "SATIS"}
    header = {**HEADER, **changes.pop("header", {})}
    lines = changes.pop("lines", LINES)
    values.update(changes)
    return document_from_records(header, lines, **values)


def test_a_sale_becomes_a_ubl_tr_document_whose_totals_add_up_in_decimal():
    doc = _document()
    xml = build_ubl(doc)
    assert structural_problems(xml) == []
    root = etree.fromstring(xml)
    text = {name: root.findtext(f"cbc:{name}", namespaces=NS) for name in
            ("CustomizationID", "ProfileID", "ID", "UUID", "InvoiceTypeCode", "IssueDate", "LineCountNumeric")}
    assert text == {"CustomizationID": "TR1.2", "ProfileID": "TEMELFATURA", "ID": "EFA2026000000001",
                    "UUID": doc.ettn, "InvoiceTypeCode": "SATIS", "IssueDate": "2026-09-01", "LineCountNumeric": "3"}
    totals = root.find("cac:LegalMonetaryTotal", NS)
    assert totals.findtext("cbc:LineExtensionAmount", namespaces=NS) == "1098.45"
    assert totals.findtext("cbc:PayableAmount", namespaces=NS) == "1314.81"
    assert doc.payable == Decimal("1098.45") + Decimal("17.49") + Decimal("195.54") + Decimal("3.33")
    assert [(str(r), str(t), str(x)) for r, t, x in doc.tax_subtotals()] == [("10", "33.30", "3.33"),
                                                                           ("20", "1065.15", "213.03")]
    customer_id = root.find("cac:AccountingCustomerParty/cac:Party/cac:PartyIdentification/cbc:ID", NS)
    assert customer_id.get("schemeID") == "VKN"


def test_a_credit_note_is_iade_with_positive_amounts_and_names_the_invoice_it_returns():
    negative = [{**line, **{k: -line[k] for k in ("net_minor", "vat_minor")}} for line in LINES]
    doc = _document(lines=negative, type_code="IADE", number="EIA2026000000001",
                    returned_invoice=("EFA2026000000001", date(2026, 9, 1)))
    xml = build_ubl(doc)
    assert structural_problems(xml) == []
    root = etree.fromstring(xml)
    assert root.findtext("cbc:InvoiceTypeCode", namespaces=NS) == "IADE"
    reference = root.find("cac:BillingReference/cac:InvoiceDocumentReference", NS)
    assert reference.findtext("cbc:ID", namespaces=NS) == "EFA2026000000001"
    assert root.find("cac:LegalMonetaryTotal/cbc:PayableAmount", NS).text == "1314.81"


def test_an_e_arsiv_invoice_to_a_person_names_the_person():
    doc = _document(header={"tax_id": "10000000146", "legal_name": "Ayşe Yılmaz"}, profile="EARSIVFATURA",
                    number="ARS2026000000001")
    root = etree.fromstring(build_ubl(doc))
    party = root.find("cac:AccountingCustomerParty/cac:Party", NS)
    assert party.find("cac:PartyIdentification/cbc:ID", NS).get("schemeID") == "TCKN"
    assert (party.findtext("cac:Person/cbc:FirstName", namespaces=NS),
            party.findtext("cac:Person/cbc:FamilyName", namespaces=NS)) == ("Ayşe", "Yılmaz")
    assert root.findtext("cac:AdditionalDocumentReference/cbc:ID", namespaces=NS) == "ELEKTRONIK"


@pytest.mark.parametrize("changes, field", [
    ({"header": {"tax_id": "4549617051"}}, "customer.tax_id"),
    ({"number": "EFA2025000000001"}, "number"),
    ({"number": "EF2026000000001"}, "number"),
    ({"type_code": "IADE"}, "returned_invoice"),
    ({"lines": [{**LINES[0], "net_minor": 8746}]}, "line 1"),
    ({"lines": [{**LINES[0], "vat_minor": 1748}]}, "line 1"),
    ({"profile": "EARSIV"}, "profile"),
])
def test_a_document_gib_would_refuse_never_leaves_and_the_error_names_invoice_and_field(changes, field):
    with pytest.raises(DocumentError) as error:
        build_ubl(_document(**changes))
    assert error.value.invoice_id == "IN00000001" and error.value.field == field
    assert "IN00000001" in str(error.value)


def test_the_structural_check_catches_totals_that_do_not_add_up_and_broken_xml():
    xml = build_ubl(_document())
    tampered = xml.replace(b">1314.81</cbc:PayableAmount>", b">1314.80</cbc:PayableAmount>")
    assert structural_problems(tampered) == ["totals do not add up: PayableAmount = TaxInclusiveAmount - "
                                             "AllowanceTotalAmount"]
    assert structural_problems(xml[:-30])[0].startswith("not well-formed XML")
    root = etree.fromstring(xml)
    root.find(f"{{{CBC}}}UUID").getparent().remove(root.find(f"{{{CBC}}}UUID"))
    assert structural_problems(etree.tostring(root)) == ["cbc:UUID missing"]


def test_the_ettn_is_derived_from_supplier_and_billing_key():
    assert ettn_for("1234567890", "IN1") == ettn_for("1234567890", "IN1") != ettn_for("1234567890", "IN2")
