"""Billing's issued invoices as 1C documents: a sale (``Document_РеализацияТоваровУслуг`` with its ``Услуги``)
and the VAT invoice issued for it (``Document_СчетФактураВыданный``), both posted; with the contract and the
services nomenclature they point at.

Shapes as a real Бухгалтерия предприятия 3.0 base holds them (DESIGN §8; the stand-in's ``schema`` docstring
names the public sources):

* References are our derived keys (uuid5 of billing's key, as :func:`ledgerlink.onec.counterparties.ref_key`):
  the counterparty (sent by ``billing_customers_to_onec``), the contract (billing's ``contracts`` row, owned by
  the counterparty, ``ВидДоговора`` ``СПокупателем``, its settlement currency), the nomenclature item (billing's
  tariff: a service, ``Услуга`` true, its unit by ОКЕИ code from the base's classifier), the sale and its VAT
  invoice. What they point at is written before them, and a rerun finds everything and creates nothing.
* What the base already holds is found by its natural keys, once per client (:func:`base_references`): the
  organisation (the connection's ``organisation_inn``, or the base's only one), the currencies by ОКВ code, the
  units by ОКЕИ code, the settlement accounts 62.01 and 62.02.
* Money travels as exact decimal text (``Decimal``), and 1C's ``Edm.Double`` answers are read as ``Decimal``
  (``ODataClient.decode``): 1C holds what billing says, to the kopek. The VAT rate is 1C's enumeration value
  (``НДС22``), per row.
* Posting is the bound ``Post`` action, never a written ``Posted``; a cancelled invoice is unposted (``Unpost``)
  and marked for deletion (``PATCH DeletionMark``), never DELETEd: removal stays an accountant's decision.
* A document we wrote carries the ``DataVersion`` 1C gave it; the version of a pair (sale/VAT invoice) is what
  the ledger keeps (:func:`pair_version`). An update is written only while 1C still holds that version; an
  accountant's edit since makes the invoice :class:`~ledgerlink.errors.HeldBack`, with both values, never
  overwritten. The version is compared here before each write, so a base that ignores ``If-Match`` (DESIGN §8)
  is caught too; where it honours it, ``If-Match`` closes the moment between our read and our write (a 412 is
  retried, then found edited).
"""
from __future__ import annotations

import json
import logging
import weakref
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import unquote

from ledgerlink.errors import ConfigurationError, HeldBack, MissingReference, RemoteRejected
from ledgerlink.onec import counterparties
from ledgerlink.onec.client import CODE_KEY_EXISTS, ODataClient, guid_key
from ledgerlink.onec.references import OKEI, OKV, VAT_RATES, contract_key, product_key, sale_key, vat_invoice_key

log = logging.getLogger(__name__)
SALES = "Document_РеализацияТоваровУслуг"
VAT_INVOICES = "Document_СчетФактураВыданный"
CONTRACTS = "Catalog_ДоговорыКонтрагентов"
PRODUCTS = "Catalog_Номенклатура"
CURRENCIES = "Catalog_Валюты"
UNITS = "Catalog_КлассификаторЕдиницИзмерения"
ORGANISATIONS = "Catalog_Организации"
ACCOUNTS = "ChartOfAccounts_Хозрасчетный"
SERVICES = "Услуги"
TYPE_PREFIX = "StandardODATA."
EMPTY_REF = counterparties.EMPTY_REF
COMMENT_PREFIX = "Ledgerlink: billing invoice "
RATE_OF = {value: key for key, value in VAT_RATES.items()}
RECEIVABLES, ADVANCES = "62.01", "62.02"  # settlement accounts: with the customer, and for advances received
HUNDRED = Decimal(100)


def money(minor) -> Decimal:
    """Minor units (kopeks, kuruş) as the exact amount."""
    return Decimal(int(minor)) / HUNDRED


def pair_version(sale: dict, vat: dict | None) -> str:
    """The version of an invoice in 1C: its sale's DataVersion and its VAT invoice's."""
    return f"{sale.get('DataVersion', '')}/{(vat or {}).get('DataVersion', '')}"


# ------------------------------------------------------------------------------------------------ what 1C holds
@dataclass
class BaseReferences:
    """What the base holds from the start, by 1C's own keys (read once per client)."""

    organisation: str
    currency_by_okv: dict[str, str] = field(default_factory=dict)
    okv_by_ref: dict[str, str] = field(default_factory=dict)
    unit_by_okei: dict[str, str] = field(default_factory=dict)
    account_by_code: dict[str, str] = field(default_factory=dict)

    def currency(self, letters: str) -> str:
        okv = OKV.get(letters)
        if okv is None or okv not in self.currency_by_okv:
            raise MissingReference("1C", CURRENCIES, f"currency {letters} (ОКВ {okv or '?'})",
                                   "add it from the classifier (Справочник «Валюты» → Подбор из ОКВ)")
        return self.currency_by_okv[okv]

    def unit(self, unit: str) -> str:
        okei = OKEI.get(unit)
        if okei is None or okei not in self.unit_by_okei:
            raise MissingReference("1C", UNITS, f"unit {unit!r} (ОКЕИ {okei or '?'})",
                                   "add it from the classifier (Классификатор единиц измерения → Подбор из ОКЕИ)")
        return self.unit_by_okei[okei]

    def account(self, code: str) -> str:
        if code not in self.account_by_code:
            raise MissingReference("1C", ACCOUNTS, f"account {code}", "the chart of accounts of БП 3.0 has it")
        return self.account_by_code[code]


_REFERENCES: "weakref.WeakKeyDictionary[ODataClient, BaseReferences]" = weakref.WeakKeyDictionary()


def base_references(client: ODataClient) -> BaseReferences:
    found = _REFERENCES.get(client)
    if found is not None:
        return found
    inn = getattr(client, "organisation_inn", None)
    organisations = [o for o in client.list(ORGANISATIONS, select=["Ref_Key", "ИНН", "Description", "DeletionMark"])
                     if not o.get("DeletionMark")]
    chosen = [o for o in organisations if not inn or o.get("ИНН") == inn]
    if len(chosen) != 1:
        raise ConfigurationError(
            f"1C base: {len(chosen)} organisation(s) "
            + (f"with ИНН {inn}" if inn else "and no organisation_inn in the connection's extra")
            + f" ({[o.get('Description') for o in organisations][:5]}): set extra.organisation_inn of onec_default "
              "to the ИНН of the organisation billing's invoices are issued by")
    found = BaseReferences(organisation=chosen[0]["Ref_Key"])
    for currency in client.list(CURRENCIES, select=["Ref_Key", "Code", "DeletionMark"]):
        if not currency.get("DeletionMark"):
            found.currency_by_okv[currency["Code"]] = currency["Ref_Key"]
        found.okv_by_ref[currency["Ref_Key"]] = currency["Code"]
    for unit in client.list(UNITS, select=["Ref_Key", "Code", "DeletionMark"]):
        if not unit.get("DeletionMark"):
            found.unit_by_okei[unit["Code"]] = unit["Ref_Key"]
    for account in client.list(ACCOUNTS, select=["Ref_Key", "Code"]):
        found.account_by_code[account["Code"]] = account["Ref_Key"]
    _REFERENCES[client] = found
    return found


# ------------------------------------------------------------------------------------------------ mapping
def lines_of(invoice: dict) -> list[dict]:
    return json.loads(invoice["lines"]) if isinstance(invoice["lines"], str) else list(invoice["lines"])


def vat_rate_value(invoice: dict, line: dict) -> str:
    rate = str(line["vat_rate"]).strip()
    if rate not in VAT_RATES:
        raise HeldBack("invoice", invoice["invoice_id"], [
            f"line {line['line_no']}: VAT rate {rate!r} has no value in 1C's enumeration СтавкиНДС "
            f"(known: {sorted(VAT_RATES, key=int)})"], {"vat_rate": rate})
    return VAT_RATES[rate]


def to_contract(contract: dict, refs: BaseReferences) -> dict:
    signed = str(contract["signed_on"])[:10]
    return {
        "Ref_Key": contract_key(contract["contract_id"]),
        "Owner_Key": counterparties.ref_key(contract["customer_id"]),
        "Организация_Key": refs.organisation,
        "ВидДоговора": "СПокупателем",
        "ВалютаВзаиморасчетов_Key": refs.currency(contract["currency"]),
        "Номер": contract["number"],
        "Дата": f"{signed}T00:00:00",
        "Description": f"№ {contract['number']} от {signed[8:10]}.{signed[5:7]}.{signed[:4]}"[:100],
        "Комментарий": f"Ledgerlink: billing contract {contract['contract_id']}",
        "DeletionMark": False,
    }


def to_product(tariff: dict, refs: BaseReferences) -> dict:
    return {
        "Ref_Key": product_key(tariff["tariff_id"]),
        "Description": str(tariff["name"])[:100],
        "НаименованиеПолное": tariff["name"],
        "Артикул": tariff["tariff_id"],
        "ЕдиницаИзмерения_Key": refs.unit(tariff["unit"]),
        "Услуга": True,
        "ВидСтавкиНДС": "Нулевая" if str(tariff.get("vat_rate")) == "0" else "Общая",
        "Комментарий": f"Ledgerlink: billing tariff {tariff['tariff_id']}",
        "DeletionMark": False,
    }


def to_sale(invoice: dict, refs: BaseReferences) -> dict:
    rows = [{
        "Номенклатура_Key": product_key(line["tariff_id"]),
        "Содержание": line["description"],
        "Количество": Decimal(str(line["quantity"])),
        "Цена": money(line["unit_price_minor"]),
        "Сумма": money(line["net_minor"]),
        "СтавкаНДС": vat_rate_value(invoice, line),
        "СуммаНДС": money(line["vat_minor"]),
    } for line in sorted(lines_of(invoice), key=lambda line: int(line["line_no"]))]
    return {
        "Ref_Key": sale_key(invoice["invoice_id"]),
        "Number": invoice["number"],
        "Date": f"{str(invoice['issue_date'])[:10]}T00:00:00",
        "DeletionMark": False,
        "ВидОперации": "Услуги",
        "Организация_Key": refs.organisation,
        "Контрагент_Key": counterparties.ref_key(invoice["customer_id"]),
        "ДоговорКонтрагента_Key": contract_key(invoice["contract_id"]),
        "ВалютаДокумента_Key": refs.currency(invoice["currency"]),
        "КурсВзаиморасчетов": Decimal(1),
        "КратностьВзаиморасчетов": "1",
        "СуммаВключаетНДС": False,  # prices and amounts are net; the VAT is on top, per row
        "ДокументБезНДС": False,
        "СуммаДокумента": money(invoice["gross_minor"]),
        "СчетУчетаРасчетовСКонтрагентом_Key": refs.account(RECEIVABLES),
        "СчетУчетаРасчетовПоАвансам_Key": refs.account(ADVANCES),
        "Комментарий": f"{COMMENT_PREFIX}{invoice['invoice_id']}",
        SERVICES: rows,
    }


def to_vat_invoice(invoice: dict, refs: BaseReferences) -> dict:
    sale = sale_key(invoice["invoice_id"])
    return {
        "Ref_Key": vat_invoice_key(sale),
        "Number": invoice["number"],
        "Date": f"{str(invoice['issue_date'])[:10]}T00:00:00",
        "DeletionMark": False,
        "ВидСчетаФактуры": "НаРеализацию",
        "КодВидаОперации": "01",
        "Организация_Key": refs.organisation,
        "Контрагент_Key": counterparties.ref_key(invoice["customer_id"]),
        "ДоговорКонтрагента_Key": contract_key(invoice["contract_id"]),
        "ДокументОснование": sale,
        "ДокументОснование_Type": TYPE_PREFIX + SALES,
        "ВалютаДокумента_Key": refs.currency(invoice["currency"]),
        "СуммаДокумента": money(invoice["gross_minor"]),
        "СуммаНДСДокумента": money(invoice["vat_minor"]),
        "Комментарий": f"{COMMENT_PREFIX}{invoice['invoice_id']}",
    }


# The fields of the pair compared with billing's (what an accountant's edit of them changes is seen, and money
# compared as Decimal): the sale's, its rows', the VAT invoice's, and whether both are posted and active.
SALE_FIELDS = ("Number", "Date", "Контрагент_Key", "ДоговорКонтрагента_Key", "ВалютаДокумента_Key", "СуммаДокумента",
               "Организация_Key")
ROW_FIELDS = ("Номенклатура_Key", "Содержание", "Количество", "Цена", "Сумма", "СтавкаНДС", "СуммаНДС")
VAT_FIELDS = ("Number", "ДокументОснование", "СуммаДокумента", "СуммаНДСДокумента", "Контрагент_Key")


def _number(value):
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return value


def view(sale: dict, vat: dict | None, *, posted: bool | None = None) -> dict:
    """A pair as compared: flat fields, the rows as tuples, numbers as Decimal (``posted``: the state expected)."""
    out = {f"sale.{name}": _number(sale.get(name)) if isinstance(sale.get(name), (int, float, Decimal)) else
           sale.get(name) for name in SALE_FIELDS}
    out["sale.Услуги"] = tuple(tuple(_number(row.get(name)) if name in ("Количество", "Цена", "Сумма", "СуммаНДС")
                                     else row.get(name) for name in ROW_FIELDS) for row in sale.get(SERVICES) or [])
    out["sale.Posted"] = sale.get("Posted") if posted is None else posted
    out["sale.DeletionMark"] = bool(sale.get("DeletionMark"))
    if vat is None:
        out["vat"] = "none"
        return out
    for name in VAT_FIELDS:
        value = vat.get(name)
        out[f"vat.{name}"] = _number(value) if isinstance(value, (int, float, Decimal)) else value
    out["vat.Posted"] = vat.get("Posted") if posted is None else posted
    out["vat.DeletionMark"] = bool(vat.get("DeletionMark"))
    return out


def differences(expected: dict, held: dict) -> dict[str, tuple[object, object]]:
    """name -> (1C's value, billing's) where they differ."""
    return {name: (held.get(name), value) for name, value in expected.items() if held.get(name) != value}


def _shown(value) -> object:
    if isinstance(value, tuple):
        return [list(map(str, row)) if isinstance(row, tuple) else str(row) for row in value]
    return str(value) if isinstance(value, Decimal) else value


# ------------------------------------------------------------------------------------------------ writes
class InvoiceDocuments:
    """Writes one billing invoice into 1C as its posted sale and VAT invoice; see the module docstring."""

    def __init__(self, client: ODataClient):
        self.client = client
        # Customers checked by ``prepare``, and those whose counterparty 1C lacks. An adapter that did not see the
        # invoice in ``prepare`` (another session's, with a parallel load) checks and prepares it on its own.
        self.checked_customers: set[str] = set()
        self.missing_counterparties: set[str] = set()

    # references ------------------------------------------------------------------------------------------------
    def prepare(self, invoices: list[dict]) -> None:
        """Before the documents: the counterparties they name must be in 1C (the customers flow sends them: an
        invoice whose counterparty is not there yet is held back and goes with a later run), their contracts and
        nomenclature items are created or brought up to date (by derived key: a rerun creates nothing)."""
        refs = base_references(self.client)
        customers = sorted({str(i["customer_id"]) for i in invoices})
        present = {row["Ref_Key"] for row in self.client.list_by_keys(
            counterparties.ENTITY_SET, [counterparties.ref_key(c) for c in customers],
            select=["Ref_Key", "DeletionMark"]) if not row.get("DeletionMark")}
        self.missing_counterparties |= {c for c in customers if counterparties.ref_key(c) not in present}
        self.missing_counterparties -= {c for c in customers if counterparties.ref_key(c) in present}
        self.checked_customers |= set(customers)
        contracts = {}
        tariffs = {}
        for invoice in invoices:
            if str(invoice["customer_id"]) in self.missing_counterparties:
                continue
            contract = json.loads(invoice["contract"]) if isinstance(invoice["contract"], str) else invoice["contract"]
            contracts[contract["contract_id"]] = contract
            for tariff in (json.loads(invoice["tariffs"]) if isinstance(invoice["tariffs"], str)
                           else invoice["tariffs"]):
                tariffs[tariff["tariff_id"]] = tariff
        self._ensure(CONTRACTS, [to_contract(c, refs) for c in contracts.values()])
        self._ensure(PRODUCTS, [to_product(t, refs) for t in tariffs.values()])

    def _ensure(self, entity_set: str, bodies: list[dict]) -> None:
        """Create what is missing, bring up to date what differs (master wins for reference data), by key."""
        if not bodies:
            return
        held = {row["Ref_Key"]: row for row in self.client.list_by_keys(entity_set, [b["Ref_Key"] for b in bodies])}
        created = updated = 0
        for body in bodies:
            current = held.get(body["Ref_Key"])
            if current is None:
                try:
                    self.client.create(entity_set, body)
                    created += 1
                except RemoteRejected as e:
                    if e.code != CODE_KEY_EXISTS:
                        raise
                continue
            changes = {name: value for name, value in body.items() if name != "Ref_Key"
                       and _comparable(current.get(name)) != _comparable(value)}
            if changes:
                self.client.patch(entity_set, body["Ref_Key"], changes, if_match=current.get("DataVersion"))
                updated += 1
        if created or updated:
            log.info("1C %s: %d created, %d brought up to date (of %d the documents point at)", entity_set,
                     created, updated, len(bodies))

    # the documents ---------------------------------------------------------------------------------------------
    def upsert(self, invoice: dict, *, believed_new: bool, written_version: str | None = None):
        """Create, or bring up to date, the invoice's posted sale and VAT invoice. Returns (outcome, version,
        requests) for :class:`~ledgerlink.delivery.Written`."""
        key, number = invoice["invoice_id"], invoice["number"]
        if str(invoice["customer_id"]) not in self.checked_customers:
            self.prepare([invoice])
        if str(invoice["customer_id"]) in self.missing_counterparties:
            raise HeldBack("invoice", key, [
                f"counterparty {invoice['customer_id']} is not in 1C yet (billing_customers_to_onec sends it; "
                f"it may be held back there): invoice {number} goes with the first run after it"],
                {"customer_id": invoice["customer_id"], "number": number})
        refs = base_references(self.client)
        sale_body, vat_body = to_sale(invoice, refs), to_vat_invoice(invoice, refs)
        expected = view(sale_body, vat_body, posted=True)
        try:
            return self._write(invoice, sale_body, vat_body, expected, believed_new, written_version)
        except RemoteRejected as e:
            raise RemoteRejected(e.system, e.status, e.code,
                                 f"invoice {number} ({key}): {e.remote_message or e}") from e

    def _write(self, invoice: dict, sale_body: dict, vat_body: dict, expected: dict, believed_new: bool,
               written_version: str | None):
        client, sale_ref, vat_ref = self.client, sale_body["Ref_Key"], vat_body["Ref_Key"]
        requests: list[str] = []
        sale = None if believed_new and written_version is None else client.get(SALES, sale_ref)
        vat = client.get(VAT_INVOICES, vat_ref) if sale is not None else None
        if sale is None:
            try:
                sale = client.create(SALES, sale_body)
                requests.append(f"POST {SALES}")
                outcome = "created"
            except RemoteRejected as e:
                if e.code != CODE_KEY_EXISTS:
                    raise
                sale = client.get(SALES, sale_ref)  # an earlier attempt's answer was lost
                vat = client.get(VAT_INVOICES, vat_ref)
                outcome = None
        else:
            outcome = None
        if outcome is None:
            found = pair_version(sale, vat)
            if written_version is not None and found != written_version:
                self._held_edited(invoice, sale, vat, expected)
            if not differences(expected, view(sale, vat)):
                return "unchanged", found, f"GET {guid_key(SALES, sale_ref)}"
            changes = {name: value for name, value in sale_body.items() if name != "Ref_Key"}
            sale = client.patch(SALES, sale_ref, changes, if_match=sale.get("DataVersion"))
            requests.append(f"PATCH {guid_key(SALES, sale_ref)}")
            outcome = "updated"
        sale = self._post(SALES, sale_ref, requests)
        if vat is None:
            try:
                client.create(VAT_INVOICES, vat_body)
                requests.append(f"POST {VAT_INVOICES}")
            except RemoteRejected as e:
                if e.code != CODE_KEY_EXISTS:
                    raise
        else:  # the sale changed: its VAT invoice is written again with it (and posted again after it)
            vat_changes = {name: value for name, value in vat_body.items() if name != "Ref_Key"}
            client.patch(VAT_INVOICES, vat_ref, vat_changes, if_match=vat.get("DataVersion"))
            requests.append(f"PATCH {guid_key(VAT_INVOICES, vat_ref)}")
        vat = self._post(VAT_INVOICES, vat_ref, requests)
        return outcome, pair_version(sale, vat), "; ".join(unquote(r) for r in requests)

    def _post(self, entity_set: str, ref: str, requests: list[str]) -> dict:
        """The bound Post action; the document as 1C holds it after posting (its new DataVersion), from the answer
        when 1C gives the document back, read otherwise."""
        posted = self.client.post_document(entity_set, ref)
        requests.append(f"POST {guid_key(entity_set, ref)}/Post")
        if posted is not None and posted.get("DataVersion") and posted.get("Posted") is True:
            return posted
        return self.client.get(entity_set, ref)

    def _held_edited(self, invoice: dict, sale: dict, vat: dict | None, expected: dict) -> None:
        held = view(sale, vat)
        changed = differences(expected, held)
        both = {name: {"1C": _shown(theirs), "billing": _shown(ours)} for name, (theirs, ours) in changed.items()}
        raise HeldBack("invoice", invoice["invoice_id"], [
            f"invoice {invoice['number']} was edited in 1C since Ledgerlink wrote it (DataVersion "
            f"{pair_version(sale, vat)}, ours was another); billing's change is not written over it"
            + (f"; they differ in {sorted(changed)}" if changed else "; billing's values equal 1C's in what we "
                                                                    "compare, the edit is elsewhere")],
            {"number": invoice["number"], **both})

    def cancel(self, sale_ref: str, *, written_version: str | None = None):
        """A cancelled invoice: its VAT invoice and sale unposted and marked for deletion (never deleted)."""
        client = self.client
        sale = client.get(SALES, sale_ref)
        if sale is None:
            return "unchanged", None, f"GET {guid_key(SALES, sale_ref)}"
        vat_ref = vat_invoice_key(sale_ref)
        vat = client.get(VAT_INVOICES, vat_ref)
        number = sale.get("Number")
        if written_version is not None and pair_version(sale, vat) != written_version:
            raise HeldBack("invoice", str(sale.get("Комментарий", "")).removeprefix(COMMENT_PREFIX) or sale_ref, [
                f"invoice {number} was cancelled in billing but edited in 1C since Ledgerlink wrote it: not unposted "
                f"nor marked for deletion over the edit"], {"number": number, "sale": sale_ref})
        requests: list[str] = []
        try:
            for entity_set, ref, document in ((VAT_INVOICES, vat_ref, vat), (SALES, sale_ref, sale)):
                if document is None or (document.get("DeletionMark") and not document.get("Posted")):
                    continue
                if document.get("Posted"):
                    client.unpost_document(entity_set, ref)
                    requests.append(f"POST {guid_key(entity_set, ref)}/Unpost")
                    document = client.get(entity_set, ref)
                client.patch(entity_set, ref, {"DeletionMark": True}, if_match=document.get("DataVersion"))
                requests.append(f"PATCH {guid_key(entity_set, ref)} DeletionMark")
        except RemoteRejected as e:
            raise RemoteRejected(e.system, e.status, e.code, f"invoice {number}: {e.remote_message or e}") from e
        sale, vat = client.get(SALES, sale_ref), client.get(VAT_INVOICES, vat_ref)
        return ("deleted" if requests else "unchanged"), pair_version(sale, vat), \
            "; ".join(unquote(r) for r in requests) or f"GET {guid_key(SALES, sale_ref)}"

    # reading back ----------------------------------------------------------------------------------------------
    def read_pairs(self, sale_refs: set[str]) -> dict[str, tuple[dict, dict | None]]:
        """The sales with these keys and their VAT invoices, as 1C holds them (deleted-marked ones too)."""
        sales = {row["Ref_Key"]: row for row in self.client.list_by_keys(SALES, sorted(sale_refs))}
        vats = {row["Ref_Key"]: row for row in self.client.list_by_keys(
            VAT_INVOICES, sorted(vat_invoice_key(ref) for ref in sales))}
        return {ref: (sale, vats.get(vat_invoice_key(ref))) for ref, sale in sales.items()}

    def vat_invoices_based_on(self, sale_refs: set[str]) -> dict[str, int]:
        """How many VAT invoices not marked for deletion each sale is the basis of (ours or an accountant's)."""
        counted: dict[str, int] = {}
        for row in self.client.list_by_keys(VAT_INVOICES, sorted(sale_refs), field="ДокументОснование",
                                            select=["Ref_Key", "ДокументОснование", "DeletionMark"]):
            if not row.get("DeletionMark"):
                counted[row["ДокументОснование"]] = counted.get(row["ДокументОснование"], 0) + 1
        return counted


def _comparable(value):
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return Decimal(str(value))
    return value


def totals(sales, currency_of_ref: dict[str, str]) -> dict[tuple[str, str, str], tuple[Decimal, Decimal]]:
    """(month of the document's date, currency letters, VAT rate %) -> (net, VAT) of these sales' rows."""
    letters = {okv: code for code, okv in OKV.items()}
    out: dict[tuple[str, str, str], tuple[Decimal, Decimal]] = {}
    for sale in sales:
        currency = letters.get(currency_of_ref.get(sale.get("ВалютаДокумента_Key"), ""), "?")
        period = str(sale.get("Date", ""))[:7]
        for row in sale.get(SERVICES) or []:
            key = (period, currency, RATE_OF.get(row.get("СтавкаНДС"), str(row.get("СтавкаНДС"))))
            net, vat = out.get(key, (Decimal(0), Decimal(0)))
            out[key] = (net + Decimal(str(row["Сумма"])), vat + Decimal(str(row["СуммаНДС"])))
    return out
