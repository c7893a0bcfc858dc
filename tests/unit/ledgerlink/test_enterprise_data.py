"""The EnterpriseData writer and the register: the БСП header, one document's bytes the same every time, the
message read back by the safe parser, money in the register as numbers with a money format, and what cannot go to
1C named by its field."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import openpyxl

from ledgerlink.billing.closing import ClosingDocument, ClosingLine
from ledgerlink.onec import enterprise_data as ed
from ledgerlink.safexml import local_name, parse_xml

HEADER = ed.MessageHeader("Ledgerlink", "BILLING", "1C", 7, 3, datetime(2026, 12, 1, 3, tzinfo=timezone.utc))


def document(invoice_id="IN1", status="issued", vat_rate="22", gross="12.20") -> ClosingDocument:
    return ClosingDocument(
        invoice_id, "БЛ-1", "2026-11-01", "2026-10-01", "2026-10-31", "RUB", Decimal("10.00"), Decimal("2.20"),
        Decimal(gross), status,
        {"customer_id": "C1", "legal_name": "ООО «Ромашка» & Co <test>", "country": "RU", "entity_kind": "company",
         "tax_id": "7707083893", "kpp": "773601001"},
        {"contract_id": "K1", "number": "Д-1", "signed_on": "2026-01-10", "currency": "RUB"},
        [ClosingLine(1, "RU-AUDIO", "Аудиоконференция", "minute", "Конференции", Decimal("6.5"), Decimal("1.5385"),
                     Decimal("10.00"), vat_rate, Decimal("2.20"), Decimal("12.20"))])


def test_the_message_has_the_bsp_header_and_reads_back_through_the_safe_parser(tmp_path):
    blobs = [ed.document_bytes(document("IN1"), "7701452833"), ed.document_bytes(document("IN2"), "7701452833")]
    path = tmp_path / "m.xml"
    digest, size = ed.write_message(path, HEADER, iter(blobs))
    data = path.read_bytes()
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    root = parse_xml(data, "m.xml")
    assert root.tag == "Message"
    header = {local_name(e.tag): e.text for e in root.find(f"{{{ed.MESSAGE_NS}}}Header").iter()}
    assert (header["ExchangePlan"], header["From"], header["To"], header["MessageNo"], header["ReceivedNo"]) == (
        "Ledgerlink", "BILLING", "1C", "7", "3")
    assert header["Format"] == "http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1.8"
    body = root.find(f"{{{ed.ED_NS}}}Body")
    assert [local_name(d.tag) for d in body] == [ed.SALE, ed.SALE]
    party = body[0].find(f"{{{ed.ED_NS}}}Контрагент/{{{ed.ED_NS}}}Наименование")
    assert party.text == "ООО «Ромашка» & Co <test>", "text escaped, not lost"
    assert blobs[0] in data and blobs[1] in data, "each document's bytes travel as hashed"
    assert ed.message_totals(path) == (2, {"643": Decimal("24.40")})


def test_a_documents_bytes_are_the_same_every_time_and_change_with_its_content():
    assert ed.document_bytes(document(), "7701452833") == ed.document_bytes(document(), "7701452833")
    assert ed.document_bytes(document(), "7701452833") != ed.document_bytes(document(status="cancelled"), "7701452833")
    assert ed.document_bytes(document(), "7701452833") == ed.document_bytes(document(status="paid"), "7701452833"), \
        "paid is issued for 1C: a payment in billing does not send the document again"
    cancelled = ed.document_element(document(status="cancelled"), "7701452833")
    assert cancelled.findtext(f"{{{ed.ED_NS}}}Проведен") == "false"
    assert cancelled.findtext(f"{{{ed.ED_NS}}}ПометкаУдаления") == "true"


def test_what_cannot_go_to_1c_is_named_by_its_field():
    assert ed.problems(document()) == []
    assert ed.problems(document(vat_rate="18.5")) == ["line 1, vat_rate: '18.5' is not a rate of 1C's СтавкиНДС"]
    assert ed.problems(document(gross="12.21")) == ["gross_minor: the header says 12.21, the lines add up to 12.20"]
    assert ed.problems(replace(document(), contract=None, currency="XXX")) == [
        "currency: 'XXX' has no ОКВ code known to the exchange",
        "contract_id: the invoice names no contract billing holds"]


def test_the_register_holds_money_as_numbers_with_a_money_format_and_a_frozen_header(tmp_path):
    register = ed.RegisterWriter(tmp_path / "r.xlsx", 7)
    register.add(document())
    register.add(document("IN2", status="cancelled"))
    register.close()
    book = openpyxl.load_workbook(tmp_path / "r.xlsx")
    sheet = book["Documents"]
    assert sheet.freeze_panes == "A2"
    assert [c.value for c in sheet[1]] == list(ed.REGISTER_COLUMNS)
    net, vat, gross = sheet["J2"], sheet["K2"], sheet["L2"]
    assert (net.value, vat.value, gross.value) == (10, 2.2, 12.2) and net.data_type == "n"
    assert {net.number_format, vat.number_format, gross.number_format} == {"#,##0.00"}
    assert sheet["N3"].value == "unposted, marked for deletion"
    totals = book["Totals"]
    assert [c.value for c in totals[2]] == ["RUB", 2, 10, 2.2, 12.2], "a cancelled document is not in the money"


def test_a_control_character_holds_the_document_back_naming_the_field():
    doc = document()
    doc.customer["legal_name"] = "ООО «Ромашка»\x01"
    doc.lines[0].description = "Конференции\x0b"
    assert ed.problems(doc) == [
        "customer.legal_name: 'ООО «Ромашка»\\x01' holds a character XML cannot carry",
        "line 1, description: 'Конференции\\x0b' holds a character XML cannot carry"]
    doc.customer["legal_name"] = "ООО\tРомашка\r\n"
    doc.lines[0].description = "ok"
    assert ed.problems(doc) == [], "tab, CR and LF are XML"


def test_both_roads_to_1c_give_a_record_the_same_object_and_codes():
    """A document sent by file one month and over OData the next must land on the same object in 1C."""
    from ledgerlink.onec import documents
    from ledgerlink.onec import enterprise_data as ed

    assert ed.document_ref("IN000123") == documents.sale_key("IN000123")
    assert ed.contract_ref("K-1") == documents.contract_key("K-1")
    assert ed.nomenclature_ref("T-MIN") == documents.product_key("T-MIN")
    assert ed.UNIT_CODES["hour"] == documents.OKEI["hour"] and ed.VAT_RATES == documents.VAT_RATES
    assert ed.CURRENCY_CODES["TRY"] == documents.OKV["TRY"] == "949"
