"""1C's file exchange in the EnterpriseData format: billing's closing documents as one message, the register of the
same documents for people, and 1C's answering message read back.

The message is what 1C's data-exchange subsystem (БСП) writes and reads (DESIGN §8)::

    <Message xmlns:msg="http://www.1c.ru/SSL/Exchange/Message">
      <msg:Header>
        <msg:Format>http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1.8</msg:Format>
        <msg:CreationDate>2026-12-01T03:00:00</msg:CreationDate>
        <msg:Confirmation>
          <msg:ExchangePlan>Ledgerlink</msg:ExchangePlan><msg:To>1C</msg:To><msg:From>BILLING</msg:From>
          <msg:MessageNo>7</msg:MessageNo><msg:ReceivedNo>3</msg:ReceivedNo>
        </msg:Confirmation>
        <msg:AvailableVersion>1.8</msg:AvailableVersion>
      </msg:Header>
      <Body xmlns="http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1.8"> one Документ.РеализацияТоваровУслуг per invoice </Body>
    </Message>

Each document carries its ``Ссылка`` (uuid5 of billing's key, as the OData flows derive theirs: a document sent
both ways is one document), its counterparty, contract and services by reference with the properties 1C needs to
create them when missing, currency by ОКВ code, the organisation by ИНН, and ``Проведен``: true for an issued
invoice; a cancelled one travels unposted and marked for deletion (``ПометкаУдаления``), never deleted.

Both files are written as streams (lxml's ``xmlfile``, openpyxl's write-only workbook): memory follows one
document. A document's content hash is the SHA-256 of its element's bytes: exactly what travels, so a document
re-sent in a later message carries the same bytes and hash.
"""
from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from lxml import etree

from ledgerlink.errors import BadFileError
from ledgerlink.onec.counterparties import RUSSIA
from ledgerlink.onec.counterparties import ref_key as _counterparty_ref
from ledgerlink.onec.references import OKEI, OKV, VAT_RATES, contract_key, product_key, sale_key
from ledgerlink.safexml import iterparse_xml, local_name, parse_xml

MESSAGE_NS = "http://www.1c.ru/SSL/Exchange/Message"
ED_VERSION = "1.8"
ED_NS = f"http://v8.1c.ru/edi/edi_stnd/EnterpriseData/{ED_VERSION}"
ED_NS_PREFIX = "http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1."
SALE = "Документ.РеализацияТоваровУслуг"
# 1C finds a currency by its ОКВ code and a unit by its ОКЕИ code (``onec.references``); an unknown unit goes as
# the conventional unit.
DEFAULT_UNIT = "876"  # усл. ед
DESCRIPTION_LENGTH = 100
COMMENT = "Ledgerlink: billing invoice {invoice_id}"
SELLING_CONTRACT = "СПокупателем"
MONEY = "#,##0.00"
QUANTITY = "#,##0.###"


# The keys and codes the OData road uses too (``onec.references``): a document sent both ways is one object in 1C.
document_ref, contract_ref, nomenclature_ref = sale_key, contract_key, product_key
CURRENCY_CODES, UNIT_CODES = OKV, OKEI


counterparty_ref = functools.lru_cache(maxsize=65536)(_counterparty_ref)


@dataclass(frozen=True)
class MessageHeader:
    exchange_plan: str
    sender: str  # our node's code (From)
    recipient: str  # 1C's node code (To)
    message_no: int
    received_no: int
    created: datetime


@dataclass(frozen=True)
class Answer:
    """1C's message back: its own number, and the number of ours it has received (applied)."""

    file: str
    exchange_plan: str
    sender: str
    recipient: str
    message_no: int
    received_no: int


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


# Characters XML 1.0 cannot carry at all (C0 controls but tab, newline, carriage return; surrogates; U+FFFE/FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _texts(doc) -> Iterator[tuple[str, object]]:
    yield "number", doc.number
    for name in ("legal_name", "tax_id", "kpp"):
        yield f"customer.{name}", doc.customer.get(name)
    if doc.contract:
        yield "contract.number", doc.contract.get("number")
    for line in doc.lines:
        yield f"line {line.line_no}, description", line.description
        yield f"line {line.line_no}, tariff name", line.tariff_name


def problems(doc) -> list[str]:
    """Why a document cannot go to 1C as billing holds it (each names the field); empty when it can."""
    found = [f"{name}: {value!r} holds a character XML cannot carry" for name, value in _texts(doc)
             if isinstance(value, str) and _NOT_XML.search(value)]
    if doc.currency not in CURRENCY_CODES:
        found.append(f"currency: {doc.currency!r} has no ОКВ code known to the exchange")
    if doc.contract is None:
        found.append("contract_id: the invoice names no contract billing holds")
    if not doc.lines:
        found.append("lines: the invoice has no lines")
    for line in doc.lines:
        if line.vat_rate not in VAT_RATES:
            found.append(f"line {line.line_no}, vat_rate: {line.vat_rate!r} is not a rate of 1C's СтавкиНДС")
        if line.net + line.vat != line.gross:
            found.append(f"line {line.line_no}: net {line.net} + VAT {line.vat} != gross {line.gross}")
    for name, total in (("net", doc.net), ("vat", doc.vat), ("gross", doc.gross)):
        lines_total = sum((getattr(line, name) for line in doc.lines), Decimal(0))
        if doc.lines and lines_total != total:
            found.append(f"{name}_minor: the header says {total}, the lines add up to {lines_total}")
    return found


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{ED_NS}}}{name}")
    if text is not None:
        child.text = text
    return child


def _coded(parent: etree._Element, name: str, key: str, value: str) -> None:
    _sub(_sub(parent, name), key, value)


def document_element(doc, organisation_inn: str) -> etree._Element:
    """One billing invoice as an EnterpriseData sales document (see the module docstring)."""
    e = etree.Element(f"{{{ED_NS}}}{SALE}", nsmap={None: ED_NS})
    keys = _sub(e, "КлючевыеСвойства")
    _sub(keys, "Ссылка", document_ref(doc.invoice_id))
    _sub(keys, "Дата", f"{doc.issue_date}T00:00:00")
    _sub(keys, "Номер", doc.number)
    _coded(keys, "Организация", "ИНН", organisation_inn)
    _sub(e, "ВидОперации", "Услуги")
    customer = doc.customer
    russian = customer["country"] == RUSSIA
    party = _sub(e, "Контрагент")
    _sub(party, "Ссылка", counterparty_ref(customer["customer_id"]))
    _sub(party, "Наименование", str(customer["legal_name"])[:DESCRIPTION_LENGTH])
    _sub(party, "НаименованиеПолное", customer["legal_name"])
    _sub(party, "ЮридическоеФизическоеЛицо",
         "ЮридическоеЛицо" if customer["entity_kind"] == "company" else "ФизическоеЛицо")
    if russian:
        _sub(party, "ИНН", customer["tax_id"] or "")
        _sub(party, "КПП", customer["kpp"] or "")
    else:
        _sub(party, "НалоговыйНомер", customer["tax_id"] or "")
    contract = _sub(e, "Договор")
    _sub(contract, "Ссылка", contract_ref(doc.contract["contract_id"]))
    _sub(contract, "Наименование", f"Договор {doc.contract['number']}")
    _sub(contract, "Номер", doc.contract["number"])
    _sub(contract, "Дата", f"{doc.contract['signed_on']}T00:00:00")
    _sub(contract, "ВидДоговора", SELLING_CONTRACT)
    _coded(contract, "Организация", "ИНН", organisation_inn)
    _coded(contract, "ВалютаВзаиморасчетов", "Код", CURRENCY_CODES[doc.contract["currency"] or doc.currency])
    _sub(_sub(contract, "Владелец"), "Ссылка", counterparty_ref(customer["customer_id"]))
    _coded(e, "Валюта", "Код", CURRENCY_CODES[doc.currency])
    _sub(e, "Сумма", _decimal_text(doc.gross))
    _sub(e, "СуммаВключаетНДС", "false")  # prices are net; VAT is added per line
    _sub(e, "Комментарий", COMMENT.format(invoice_id=doc.invoice_id))
    _sub(e, "Проведен", "false" if doc.cancelled else "true")
    if doc.cancelled:
        _sub(e, "ПометкаУдаления", "true")
    services = _sub(e, "Услуги")
    for line in doc.lines:
        row = _sub(services, "Строка")
        item = _sub(row, "Номенклатура")
        _sub(item, "Ссылка", nomenclature_ref(line.tariff_id))
        _sub(item, "Наименование", str(line.tariff_name)[:DESCRIPTION_LENGTH])
        _coded(item, "ЕдиницаИзмерения", "Код", UNIT_CODES.get(line.unit, DEFAULT_UNIT))
        _sub(item, "Услуга", "true")
        _sub(row, "Содержание", line.description)
        _sub(row, "Количество", _decimal_text(line.quantity))
        _sub(row, "Цена", _decimal_text(line.unit_price))
        _sub(row, "Сумма", _decimal_text(line.net))
        _sub(row, "СтавкаНДС", VAT_RATES[line.vat_rate])
        _sub(row, "СуммаНДС", _decimal_text(line.vat))
    return e


def document_bytes(doc, organisation_inn: str) -> bytes:
    """The document's element as it travels; its SHA-256 is the document's content hash."""
    return etree.tostring(document_element(doc, organisation_inn), encoding="utf-8")


class _HashingFile:
    """A binary file that hashes what is written through it (the manifest without reading the file again)."""

    def __init__(self, handle):
        self.handle, self.sha256, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.handle.write(data)


def write_message(path: Path, header: MessageHeader, documents: Iterable[bytes]) -> tuple[str, int]:
    """Write the message to ``path`` as a stream: the header, then each document's bytes as they come.
    Returns (SHA-256 hex digest, bytes written)."""
    with open(path, "wb") as raw:
        out = _HashingFile(raw)
        out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
        with etree.xmlfile(out, encoding="utf-8") as xf:
            with xf.element("Message", nsmap={"msg": MESSAGE_NS}):
                xf.write(_header_element(header), pretty_print=True)
                with xf.element(f"{{{ED_NS}}}Body", nsmap={None: ED_NS}):
                    xf.write("\n")
                    for blob in documents:
                        xf.flush()  # what lxml buffered goes first
                        out.write(blob)  # the exact bytes hashed (each redeclares the Body's namespace)
                        xf.write("\n")
        return out.sha256.hexdigest(), out.size


def _header_element(header: MessageHeader) -> etree._Element:
    def msg(parent, name, text=None):
        child = etree.SubElement(parent, f"{{{MESSAGE_NS}}}{name}")
        child.text = text
        return child

    head = etree.Element(f"{{{MESSAGE_NS}}}Header", nsmap={"msg": MESSAGE_NS})
    msg(head, "Format", ED_NS)
    msg(head, "CreationDate", header.created.strftime("%Y-%m-%dT%H:%M:%S"))
    confirmation = msg(head, "Confirmation")
    msg(confirmation, "ExchangePlan", header.exchange_plan)
    msg(confirmation, "To", header.recipient)
    msg(confirmation, "From", header.sender)
    msg(confirmation, "MessageNo", str(header.message_no))
    msg(confirmation, "ReceivedNo", str(header.received_no))
    msg(head, "AvailableVersion", ED_VERSION)
    return head


def message_name(sender: str, recipient: str, message_no: int) -> str:
    """``Message_<From>_<To>_<no>.xml``: 1C's own name with the number, so a later message never replaces an
    earlier one that 1C has not taken yet."""
    return f"Message_{sender}_{recipient}_{message_no:06d}.xml"


def read_answer(data: bytes, file: str) -> Answer:
    """1C's answering message (UTF-8 or Windows-1251), through the safe parser: its header's numbers. Only local
    names are matched, so the header may sit in БСП's namespace or EnterpriseData's, inside ``Confirmation`` or
    not."""
    root = parse_xml(data, file)
    if local_name(root.tag) != "Message":
        raise BadFileError(file, f"root element is {local_name(root.tag)}, expected Message", field="Message")
    header = next((c for c in root if local_name(c.tag) == "Header"), None)
    if header is None:
        raise BadFileError(file, "no Message/Header", field="Header")
    values: dict[str, str] = {}
    for element in header.iter():
        name = local_name(element.tag)
        if name in ("ExchangePlan", "From", "To", "MessageNo", "ReceivedNo") and name not in values:
            values[name] = (element.text or "").strip()
    for name in ("ExchangePlan", "From", "To", "MessageNo", "ReceivedNo"):
        if not values.get(name):
            raise BadFileError(file, f"the header has no {name}", field=name)
    for name in ("MessageNo", "ReceivedNo"):
        if not values[name].isdigit():
            raise BadFileError(file, f"{name} must be a whole number, got {values[name]!r}", field=name)
    return Answer(file=file, exchange_plan=values["ExchangePlan"], sender=values["From"], recipient=values["To"],
                  message_no=int(values["MessageNo"]), received_no=int(values["ReceivedNo"]))


def message_totals(path: Path) -> tuple[int, dict[str, Decimal]]:
    """Read our written message back as a stream (the safe parser): how many documents and the amount per
    currency code they carry. Reconciliation compares it with billing's figures for the same documents."""
    count, totals = 0, {}
    for _, element in iterparse_xml(path):
        if local_name(element.tag) != SALE:
            continue
        count += 1
        code = amount = None
        for child in element:
            name = local_name(child.tag)
            if name == "Валюта":
                code = (child[0].text if len(child) else child.text or "").strip()
            elif name == "Сумма":
                amount = Decimal((child.text or "0").strip())
        totals[code] = totals.get(code, Decimal(0)) + (amount or Decimal(0))
        element.clear()
    return count, totals


# The register -----------------------------------------------------------------------------------------------------
REGISTER_COLUMNS = ("Invoice", "Number", "Date", "Period", "Customer", "Counterparty", "Tax id", "Contract",
                    "Currency", "Net", "VAT", "Gross", "Lines", "In 1C", "Message")


class RegisterWriter:
    """The XLSX register of the message's documents, one row each, written as a stream (openpyxl write-only):
    money as numbers from the Decimal (``#,##0.00``), the header row frozen."""

    def __init__(self, path: Path, message_no: int):
        from openpyxl import Workbook  # at write time, never at DAG parse time

        self.path, self.message_no = path, message_no
        self.book = Workbook(write_only=True)
        self.sheet = self.book.create_sheet("Documents")
        self.sheet.freeze_panes = "A2"
        for column, width in zip("ABCDEFGHIJKLMNO", (14, 18, 11, 9, 10, 40, 14, 14, 9, 15, 14, 15, 7, 30, 9)):
            self.sheet.column_dimensions[column].width = width
        self.sheet.append(list(REGISTER_COLUMNS))
        self.totals: dict[str, list[Decimal]] = {}

    def _money(self, value: Decimal):
        from openpyxl.cell import WriteOnlyCell

        cell = WriteOnlyCell(self.sheet, value=value)
        cell.number_format = MONEY
        return cell

    def add(self, doc) -> None:
        state = "unposted, marked for deletion" if doc.cancelled else "posted"
        self.sheet.append([doc.invoice_id, doc.number, doc.issue_date, doc.period_start[:7],
                           doc.customer["customer_id"], doc.customer["legal_name"], doc.customer["tax_id"],
                           doc.contract["number"] if doc.contract else "", doc.currency,
                           self._money(doc.net), self._money(doc.vat), self._money(doc.gross), len(doc.lines), state,
                           self.message_no])
        sums = self.totals.setdefault(doc.currency, [Decimal(0)] * 4)
        sums[0] += 1
        if not doc.cancelled:  # a cancelled document is in the register, not in the money
            sums[1] += doc.net
            sums[2] += doc.vat
            sums[3] += doc.gross

    def close(self) -> Path:
        totals = self.book.create_sheet("Totals")
        totals.freeze_panes = "A2"
        totals.append(["Currency", "Documents", "Net (posted)", "VAT (posted)", "Gross (posted)"])
        for currency, (count, net, vat, gross) in sorted(self.totals.items()):
            totals.append([currency, int(count), *(self._money_in(totals, v) for v in (net, vat, gross))])
        self.book.save(self.path)
        return self.path

    @staticmethod
    def _money_in(sheet, value: Decimal):
        from openpyxl.cell import WriteOnlyCell

        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = MONEY
        return cell


def documents_with_bytes(documents: Iterable, organisation_inn: str) -> Iterator[tuple[object, bytes, str]]:
    """(document, its bytes, their SHA-256) for each document."""
    for doc in documents:
        blob = document_bytes(doc, organisation_inn)
        yield doc, blob, hashlib.sha256(blob).hexdigest()
