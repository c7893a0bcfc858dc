"""File exchange: what 1C does with the messages dropped in its exchange folder (the month-end flow).

Folders under the exchange root: ``in/`` (dropped here), ``processed/``, ``error/``, ``out/`` (acknowledgements).
A file is taken when complete: names starting with ``.`` or ending in ``.tmp``/``.part`` are still being
uploaded and left alone. If ``<name>.sha256`` lies beside a file (sha256sum format or the bare hex digest),
the content must match it; the manifest travels with its file. Files are taken oldest first.

EnterpriseData message (the subset the stand-in reads)::

    <Message>                                 any namespace; only local names are matched in the header
      <Header>
        <Format>http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1.8</Format>   optional
        <ExchangePlan>Ledgerlink</ExchangePlan>        or ExchangePlan_Ledgerlink
        <From>BILLING</From>                           the Code of a node of ExchangePlan_Ledgerlink
        <To>1C</To>                                    echoed back, not checked
        <MessageNo>7</MessageNo>                       a positive integer
        <ReceivedNo>0</ReceivedNo>                     optional, recorded nowhere (use NotifyChangesReceived)
      </Header>                                       (a <Confirmation> wrapper around these, as 1C's SSL
                                                       writes it, is accepted too)
      <Body xmlns="http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1.8">      any 1.x version
        <Справочник.Контрагенты> ... </Справочник.Контрагенты>
        <Документ.РеализацияТоваровУслуг> ... </Документ.РеализацияТоваровУслуг>
      </Body>
    </Message>

Every object carries ``<Ссылка>`` (its Ref_Key guid), directly or inside ``<КлючевыеСвойства>``; other
properties are looked up the same way (see ``ED_TYPES`` for the element -> property map). A reference is an
element holding ``<Ссылка>`` and, optionally, the referenced object's own properties: the object is created
from them when it does not exist yet and left as it is when it does (EnterpriseData's "find by key
properties, else create"). Objects a base holds from its classifiers or its own setup (currency, unit of
measure, organisation) are found by their key property instead (``<Валюта><Код>643</Код></Валюта>``, the
organisation by ``<ИНН>``; see ``EDType.lookups``); one not found rejects the file. The main objects are
upserts by Ref. ``<Проведен>true</Проведен>`` on a document posts it (with the posting checks; a failure
rejects the whole file), ``false`` unposts it. Example::

    <Документ.РеализацияТоваровУслуг>
      <КлючевыеСвойства><Ссылка>guid</Ссылка><Дата>2026-01-31T00:00:00</Дата><Номер>INV-1</Номер></КлючевыеСвойства>
      <ВидОперации>Услуги</ВидОперации><Организация><ИНН>7701452833</ИНН></Организация>
      <Контрагент><Ссылка>guid</Ссылка><Наименование>ООО Ромашка</Наименование><ИНН>7701234567</ИНН></Контрагент>
      <Договор><Ссылка>guid</Ссылка><Наименование>Договор 1</Наименование><ВидДоговора>СПокупателем</ВидДоговора>
        <Организация><ИНН>7701452833</ИНН></Организация><ВалютаВзаиморасчетов><Код>643</Код></ВалютаВзаиморасчетов>
        <Владелец><Ссылка>counterparty guid</Ссылка></Владелец></Договор>
      <Валюта><Код>643</Код></Валюта><Сумма>1220.00</Сумма><СуммаВключаетНДС>true</СуммаВключаетНДС>
      <Проведен>true</Проведен>
      <Услуги><Строка><Номенклатура><Ссылка>guid</Ссылка><Наименование>Связь</Наименование>
          <ЕдиницаИзмерения><Код>876</Код></ЕдиницаИзмерения></Номенклатура>
        <Содержание>...</Содержание><Количество>1</Количество><Цена>1000.00</Цена><Сумма>1000.00</Сумма>
        <СтавкаНДС>НДС22</СтавкаНДС><СуммаНДС>220.00</СуммаНДС></Строка></Услуги>
    </Документ.РеализацияТоваровУслуг>

``<ПометкаУдаления>true</ПометкаУдаления>`` marks a document for deletion (1C unposts it then); objects are
never deleted by a message.

A file applies whole or not at all. Applied: moved to ``processed/`` and acknowledged by
``out/Message_<To>_<From>.xml`` (the incoming To/From; the ack's From is the incoming To), written as 1C's
data-exchange subsystem (БСП) writes its messages: an unqualified ``Message`` declaring
``xmlns:msg="http://www.1c.ru/SSL/Exchange/Message"``, ``msg:Header`` with ``msg:Format`` (EnterpriseData 1.8),
``msg:CreationDate``, ``msg:Confirmation`` (``ExchangePlan``, ``To``, ``From``, its own ``MessageNo`` and
``ReceivedNo`` = the MessageNo applied) and ``msg:AvailableVersion``, then an empty ``Body`` in the
EnterpriseData namespace. A message whose MessageNo is not above the node's ReceivedNo was applied before: it is
moved to ``processed/`` and acknowledged again, not re-applied. Rejected: moved to ``error/`` with
``<name>.error.txt`` beside it saying why.

CSV register: ``<kind>[.<encoding>].csv`` with kind ``counterparties``, ``contracts`` or ``nomenclature`` and
encoding ``utf-8`` (the default, BOM allowed), ``cp1251``/``windows-1251`` or ``cp1254``/``windows-1254``.
``;``-separated, the first line names OData properties (``Ref_Key`` required, unknown names rejected);
empty cells leave a property as it is; decimals may use a comma, dates ``DD.MM.YYYY[ HH:MM:SS]``, booleans
``true/false/1/0/да/нет``. Rows are upserts by Ref_Key; the file goes to ``processed/`` (no ack message).
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from lxml import etree

from . import schema
from .errors import ODataError
from .infobase import Infobase
from .schema import CONTRACTS, COUNTERPARTIES, CURRENCIES, EXCHANGE_PLAN, ORGANISATIONS, PRODUCTS, SALES, UNITS
from .values import comparable

log = logging.getLogger(__name__)

ED_NAMESPACE = "http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1.8"
ED_NAMESPACE_PREFIX = "http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1."
MESSAGE_NAMESPACE = "http://www.1c.ru/SSL/Exchange/Message"  # БСП's message header
FOLDERS = ("in", "out", "processed", "error")
CSV_REGISTERS = {"counterparties": COUNTERPARTIES, "contracts": CONTRACTS, "nomenclature": PRODUCTS}
CSV_ENCODINGS = {"utf-8": "utf-8-sig", "utf8": "utf-8-sig", "cp1251": "cp1251", "windows-1251": "cp1251",
                 "cp1254": "cp1254", "windows-1254": "cp1254"}
_CSV_NAME = re.compile(r"^(?P<kind>[a-z]+)(?:\.(?P<encoding>[\w-]+))?\.csv$", re.IGNORECASE)


class ExchangeFileError(Exception):
    """A file that cannot be applied; the message is written to its ``.error.txt``."""


@dataclass(frozen=True)
class EDType:
    """How an EnterpriseData object maps onto an entity set."""

    entity_set: str | None  # None for tabular-part rows
    fields: dict[str, str]  # ED element -> OData property
    references: dict[str, tuple[str, str]] = field(default_factory=dict)  # ED element -> (property, ED type)
    tables: dict[str, tuple[str, "EDType"]] = field(default_factory=dict)  # ED element -> (part, row type)
    # ED element -> (property, entity set, the set's property matched, the element's key property): an object the
    # base already holds, found by its code (``<Валюта><Код>643</Код></Валюта>``, or the bare ``<Валюта>643</Валюта>``)
    lookups: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)


CURRENCY_BY_CODE = (CURRENCIES, "Code", "Код")
ORGANISATION_BY_INN = (ORGANISATIONS, "ИНН", "ИНН")
ED_TYPES: dict[str, EDType] = {
    "Справочник.Контрагенты": EDType(COUNTERPARTIES, {
        "Наименование": "Description", "НаименованиеПолное": "НаименованиеПолное", "ИНН": "ИНН", "КПП": "КПП",
        "ЮридическоеФизическоеЛицо": "ЮридическоеФизическоеЛицо", "НалоговыйНомер": "НалоговыйНомер",
        "РегистрационныйНомер": "РегистрационныйНомер", "Комментарий": "Комментарий",
    }),
    "Справочник.Номенклатура": EDType(PRODUCTS, {
        "Наименование": "Description", "НаименованиеПолное": "НаименованиеПолное", "Артикул": "Артикул",
        "Услуга": "Услуга", "ВидСтавкиНДС": "ВидСтавкиНДС",
    }, lookups={"ЕдиницаИзмерения": ("ЕдиницаИзмерения_Key", UNITS, "Code", "Код")}),
    "Справочник.ДоговорыКонтрагентов": EDType(CONTRACTS, {
        "Наименование": "Description", "Номер": "Номер", "Дата": "Дата", "ВидДоговора": "ВидДоговора",
        "Комментарий": "Комментарий",
    }, references={"Владелец": ("Owner_Key", "Справочник.Контрагенты")}, lookups={
        "ВалютаВзаиморасчетов": ("ВалютаВзаиморасчетов_Key", *CURRENCY_BY_CODE),
        "Организация": ("Организация_Key", *ORGANISATION_BY_INN),
    }),
}
ED_TYPES["Документ.РеализацияТоваровУслуг"] = EDType(SALES, {
    "Номер": "Number", "Дата": "Date", "ВидОперации": "ВидОперации", "Сумма": "СуммаДокумента",
    "СуммаВключаетНДС": "СуммаВключаетНДС", "Комментарий": "Комментарий", "ПометкаУдаления": "DeletionMark",
}, references={
    "Контрагент": ("Контрагент_Key", "Справочник.Контрагенты"),
    "Договор": ("ДоговорКонтрагента_Key", "Справочник.ДоговорыКонтрагентов"),
}, lookups={
    "Валюта": ("ВалютаДокумента_Key", *CURRENCY_BY_CODE), "Организация": ("Организация_Key", *ORGANISATION_BY_INN),
}, tables={"Услуги": ("Услуги", EDType(None, {
    "Содержание": "Содержание", "Количество": "Количество", "Цена": "Цена", "Сумма": "Сумма",
    "СтавкаНДС": "СтавкаНДС", "СуммаНДС": "СуммаНДС",
}, references={"Номенклатура": ("Номенклатура_Key", "Справочник.Номенклатура")}))})


@dataclass
class ExchangeFileResult:
    file: str
    outcome: str  # "applied", "already_received" or "error"
    objects: int = 0
    message_no: int | None = None
    error: str | None = None


@dataclass
class _Operation:
    mode: str  # "upsert" (the message's own objects) or "ensure" (create a referenced object if missing)
    entity_set: str
    payload: dict
    posted: bool | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _child(elem: Element, name: str) -> Element | None:
    """A property element, directly under ``elem`` or inside its ``КлючевыеСвойства``."""
    for candidate in list(elem) + [c for k in elem if _local(k.tag) == "КлючевыеСвойства" for c in k]:
        if _local(candidate.tag) == name:
            return candidate
    return None


class FileExchange:
    """Takes files from ``root/in`` and applies them to the infobase."""

    def __init__(self, root: Path, infobase: Infobase):
        self.root = root
        self.infobase = infobase
        self._lock = threading.Lock()  # the poller and an HTTP-triggered run must not take the same file
        for name in FOLDERS:
            (root / name).mkdir(parents=True, exist_ok=True)

    def process_folder(self) -> list[ExchangeFileResult]:
        """Apply every complete file waiting in ``in/``; returns one result per file taken."""
        with self._lock:
            results = []
            for path in self._waiting_files():
                result = self._process_file(path)
                log.info("1C exchange: %s -> %s (%s objects)%s", result.file, result.outcome, result.objects,
                         f": {result.error}" if result.error else "")
                results.append(result)
            return results

    def _waiting_files(self) -> list[Path]:
        inbox = self.root / "in"
        files = [p for p in inbox.iterdir()
                 if p.is_file() and not p.name.startswith(".")
                 and not p.name.endswith((".tmp", ".part", ".sha256"))]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def _process_file(self, path: Path) -> ExchangeFileResult:
        manifest = path.with_name(path.name + ".sha256")
        try:
            data = path.read_bytes()
            if manifest.exists():
                self._check_manifest(data, manifest)
            if path.suffix.lower() == ".xml":
                result = self._apply_message(path.name, data)
            elif path.suffix.lower() == ".csv":
                result = self._apply_register(path.name, data)
            else:
                raise ExchangeFileError(f"unsupported file type {path.suffix!r}: expected .xml or .csv")
        except (ExchangeFileError, ODataError) as e:
            problem = e.message if isinstance(e, ODataError) else str(e)
            self._move(path, manifest, "error")
            (self.root / "error" / f"{path.name}.error.txt").write_text(problem + "\n", encoding="utf-8")
            return ExchangeFileResult(path.name, "error", error=problem)
        self._move(path, manifest, "processed")
        return result

    @staticmethod
    def _check_manifest(data: bytes, manifest: Path) -> None:
        words = manifest.read_text(encoding="utf-8").split()
        expected = words[0].lower() if words else ""
        actual = hashlib.sha256(data).hexdigest()
        if expected != actual:
            raise ExchangeFileError(f"checksum mismatch: {manifest.name} says {expected or '(empty)'}, "
                                    f"the file's sha256 is {actual}")

    def _move(self, path: Path, manifest: Path, folder: str) -> None:
        for source in (path, manifest):
            if not source.exists():
                continue
            target = self.root / folder / source.name
            counter = 1
            while target.exists():  # keep earlier evidence: a re-sent file never overwrites it
                target = self.root / folder / f"{source.name}.{counter}"
                counter += 1
            os.replace(source, target)

    # EnterpriseData
    def _apply_message(self, name: str, data: bytes) -> ExchangeFileResult:
        try:
            root = SafeET.fromstring(data)
        except (ParseError, DefusedXmlException) as e:
            raise ExchangeFileError(f"not well-formed or unsafe XML: {e}") from e
        header = self._header(root)
        body = next((c for c in root if _local(c.tag) == "Body"), None)
        if body is None or not _namespace(body.tag).startswith(ED_NAMESPACE_PREFIX):
            raise ExchangeFileError(f"no Body in the EnterpriseData namespace {ED_NAMESPACE_PREFIX}x")
        node = self._sender(header)
        message_no = header["MessageNo"]
        if message_no <= int(node["ReceivedNo"]):
            self._write_ack(header)
            return ExchangeFileResult(name, "already_received", message_no=message_no)
        operations = [op for obj in body for op in self._object_operations(obj)]
        with self.infobase.store.transaction():  # all or nothing
            for op in operations:
                self._apply(op, node["Ref_Key"])
            self.infobase.set_node_received_no(node, message_no)
        self._write_ack(header)
        return ExchangeFileResult(name, "applied", objects=sum(op.mode == "upsert" for op in operations),
                                  message_no=message_no)

    @staticmethod
    def _header(root: Element) -> dict:
        if _local(root.tag) != "Message":
            raise ExchangeFileError(f"root element is {_local(root.tag)}, expected Message")
        header_el = next((c for c in root if _local(c.tag) == "Header"), None)
        if header_el is None:
            raise ExchangeFileError("no Message/Header")
        header = {}
        for elem in header_el.iter():
            key = _local(elem.tag)
            if key in ("ExchangePlan", "From", "To", "MessageNo", "ReceivedNo") and key not in header:
                header[key] = (elem.text or "").strip()
        missing = [k for k in ("ExchangePlan", "From", "To", "MessageNo") if not header.get(k)]
        if missing:
            raise ExchangeFileError(f"header lacks {', '.join(missing)}")
        if header["ExchangePlan"] not in (EXCHANGE_PLAN, EXCHANGE_PLAN.split("_", 1)[1]):
            raise ExchangeFileError(f"unknown exchange plan {header['ExchangePlan']!r}; expected "
                                    f"{EXCHANGE_PLAN.split('_', 1)[1]!r}")
        for key in ("MessageNo", "ReceivedNo"):
            raw = header.get(key) or "0"
            if not raw.isdigit():
                raise ExchangeFileError(f"{key} must be a non-negative integer, got {raw!r}")
            header[key] = int(raw)
        if header["MessageNo"] < 1:
            raise ExchangeFileError("MessageNo must be 1 or more")
        return header

    def _sender(self, header: dict) -> dict:
        try:
            return self.infobase.node_by_code(header["From"])
        except ODataError as e:
            raise ExchangeFileError(f"sender {header['From']!r} is not a node of {EXCHANGE_PLAN}") from e

    def _object_operations(self, obj: Element) -> list[_Operation]:
        type_name = _local(obj.tag)
        ed_type = ED_TYPES.get(type_name)
        if ed_type is None:
            raise ExchangeFileError(f"unsupported object {type_name}; supported: {', '.join(ED_TYPES)}")
        operations: list[_Operation] = []
        payload = self._payload(obj, ed_type, self.infobase.entity_sets[ed_type.entity_set].fields, operations)
        posted_el = _child(obj, "Проведен")
        posted = None if posted_el is None else self._boolean((posted_el.text or "").strip(), "Проведен")
        operations.append(_Operation("upsert", ed_type.entity_set, payload, posted))
        return operations

    def _payload(self, elem: Element, ed_type: EDType, fields: dict, operations: list[_Operation],
                 parts: dict | None = None) -> dict:
        """OData wire values of one object or row; referenced objects are appended to ``operations``."""
        payload = {}
        if ed_type.entity_set:
            payload["Ref_Key"] = self._ref(elem, _local(elem.tag))
        for element, prop in ed_type.fields.items():
            child = _child(elem, element)
            if child is not None:
                payload[prop] = self._value(fields[prop].edm, (child.text or "").strip(), element)
        for element, (prop, target_type) in ed_type.references.items():
            child = _child(elem, element)
            if child is None:
                continue
            target = ED_TYPES[target_type]
            nested = self._payload(child, target, self.infobase.entity_sets[target.entity_set].fields, operations)
            if len(nested) > 1:  # more than Ссылка: enough to create the object if it is missing
                operations.append(_Operation("ensure", target.entity_set, nested))
            payload[prop] = nested["Ref_Key"]
        for element, (prop, set_name, match, key) in ed_type.lookups.items():
            child = _child(elem, element)
            if child is not None:
                payload[prop] = self._lookup(child, set_name, match, key)
        entity_set = self.infobase.entity_sets[ed_type.entity_set] if ed_type.entity_set else None
        for element, (part_name, row_type) in ed_type.tables.items():
            table = _child(elem, element)
            if table is None:
                continue
            row_fields = entity_set.tabular_parts[part_name].fields
            payload[part_name] = [self._payload(row, row_type, row_fields, operations)
                                  for row in table if _local(row.tag) == "Строка"]
        return payload

    def _lookup(self, elem: Element, set_name: str, match: str, key: str) -> str:
        """The Ref_Key of the object of ``set_name`` whose ``match`` is the element's key property (or its text)."""
        key_el = _child(elem, key)
        wanted = ((key_el.text if key_el is not None else elem.text) or "").strip()
        if not wanted:
            raise ExchangeFileError(f"{_local(elem.tag)} has no <{key}>")
        found = [r["Ref_Key"] for r in self.infobase.all(set_name)
                 if comparable(schema.STRING, r[match]) == comparable(schema.STRING, wanted)]
        if not found:
            raise ExchangeFileError(f"{_local(elem.tag)}: no {set_name} with {match} {wanted!r} in the base")
        return found[0]

    @staticmethod
    def _ref(elem: Element, where: str) -> str:
        ref = _child(elem, "Ссылка")
        if ref is None or not (ref.text or "").strip():
            raise ExchangeFileError(f"{where} has no <Ссылка> (its Ref guid)")
        return ref.text.strip()

    def _value(self, edm: str, text: str, where: str):
        if edm == schema.BOOLEAN:
            return self._boolean(text, where)
        return text  # strings, decimals, dates, guids and Int64 travel as text; the infobase checks them

    @staticmethod
    def _boolean(text: str, where: str) -> bool:
        lowered = text.lower()
        if lowered in ("true", "1", "да", "истина"):
            return True
        if lowered in ("false", "0", "нет", "ложь", ""):
            return False
        raise ExchangeFileError(f"{where}: expected true or false, got {text!r}")

    def _apply(self, op: _Operation, origin: str) -> None:
        try:
            if op.mode == "ensure":
                if self.infobase.get(op.entity_set, op.payload["Ref_Key"].lower()) is None:
                    self.infobase.create(op.entity_set, op.payload, origin=origin)
                return
            record = self.infobase.upsert(op.entity_set, op.payload, origin=origin)
            if op.posted is True:
                self.infobase.post(op.entity_set, record["Ref_Key"], origin=origin)
            elif op.posted is False and record["Posted"]:
                self.infobase.unpost(op.entity_set, record["Ref_Key"], origin=origin)
        except ODataError as e:
            raise ExchangeFileError(f"{op.entity_set} {op.payload.get('Ref_Key')}: {e.message}") from e

    def _write_ack(self, header: dict) -> Path:
        """``out/Message_<To>_<From>.xml`` confirming the message: ReceivedNo = its MessageNo."""
        sender_code, own_code = header["From"], header["To"]
        own_no = self.infobase.store.next_value(f"file_message_no:{sender_code}")
        msg = MESSAGE_NAMESPACE
        message = etree.Element("Message", nsmap={"msg": msg})
        head = etree.SubElement(message, f"{{{msg}}}Header")
        etree.SubElement(head, f"{{{msg}}}Format").text = ED_NAMESPACE
        etree.SubElement(head, f"{{{msg}}}CreationDate").text = datetime.now().isoformat(timespec="seconds")
        confirmation = etree.SubElement(head, f"{{{msg}}}Confirmation")
        values = {"ExchangePlan": EXCHANGE_PLAN.split("_", 1)[1], "To": sender_code, "From": own_code,
                  "MessageNo": str(own_no), "ReceivedNo": str(header["MessageNo"])}
        for key, value in values.items():
            etree.SubElement(confirmation, f"{{{msg}}}{key}").text = value
        etree.SubElement(head, f"{{{msg}}}AvailableVersion").text = ED_NAMESPACE.rsplit("/", 1)[1]
        etree.SubElement(message, f"{{{ED_NAMESPACE}}}Body", nsmap={None: ED_NAMESPACE})
        target = self.root / "out" / f"Message_{own_code}_{sender_code}.xml"
        temporary = target.with_name(f".{target.name}.tmp")  # hidden until complete, then renamed
        temporary.write_bytes(etree.tostring(message, encoding="UTF-8", xml_declaration=True, pretty_print=True))
        os.replace(temporary, target)
        return target

    # CSV register
    def _apply_register(self, name: str, data: bytes) -> ExchangeFileResult:
        match = _CSV_NAME.match(name)
        if not match or match["kind"].lower() not in CSV_REGISTERS:
            raise ExchangeFileError(f"CSV name must be <kind>[.<encoding>].csv with kind one of "
                                    f"{', '.join(CSV_REGISTERS)}")
        encoding = (match["encoding"] or "utf-8").lower()
        if encoding not in CSV_ENCODINGS:
            raise ExchangeFileError(f"unknown encoding {encoding!r} in the name; known: {', '.join(CSV_ENCODINGS)}")
        try:
            text = data.decode(CSV_ENCODINGS[encoding])
        except UnicodeDecodeError as e:
            raise ExchangeFileError(f"does not decode as {encoding}: {e}") from e
        set_name = CSV_REGISTERS[match["kind"].lower()]
        fields = self.infobase.entity_sets[set_name].fields
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
        except csv.Error as e:
            raise ExchangeFileError(f"malformed CSV: {e}") from e
        if not rows:
            raise ExchangeFileError("empty file")
        columns = [c.strip() for c in rows[0]]
        unknown = [c for c in columns if c not in fields]
        if "Ref_Key" not in columns or unknown:
            raise ExchangeFileError(f"header must name {set_name} properties including Ref_Key; "
                                    f"unknown: {', '.join(unknown) or '-'}")
        payloads = []
        for line_no, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise ExchangeFileError(f"line {line_no}: {len(row)} cells, header has {len(columns)}")
            payload = {col: self._csv_value(fields[col].edm, cell.strip(), f"line {line_no}, {col}")
                       for col, cell in zip(columns, row) if cell.strip()}
            if "Ref_Key" not in payload:
                raise ExchangeFileError(f"line {line_no}: empty Ref_Key")
            payloads.append(payload)
        with self.infobase.store.transaction():
            for payload in payloads:
                try:
                    self.infobase.upsert(set_name, payload)
                except ODataError as e:
                    raise ExchangeFileError(f"{payload['Ref_Key']}: {e.message}") from e
        return ExchangeFileResult(name, "applied", objects=len(payloads))

    def _csv_value(self, edm: str, text: str, where: str):
        if edm == schema.BOOLEAN:
            return self._boolean(text, where)
        if edm in (schema.DECIMAL, schema.DOUBLE):
            return text.replace("\u00a0", "").replace(" ", "").replace(",", ".")
        if edm == schema.DATETIME:
            for fmt in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y"):
                try:
                    return datetime.strptime(text, fmt).isoformat(timespec="seconds")
                except ValueError:
                    continue
        return text
