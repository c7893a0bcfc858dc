"""The bank statement import ("Банк и касса → Банковские выписки → Загрузить"): incoming payments become posted
``Document_ПоступлениеНаРасчетныйСчет`` receipts, as an accountant's daily import does in a БП 3.0 base.

The statement is a JSON file (a list of lines; the stand-in's stand-in for 1C's ``kl_to_1c.txt``)::

    {"id": "S-0001", "number": "4711", "date": "2026-11-14", "payer_inn": "7701234567", "payer_name": "ООО Ромашка",
     "amount": "1220.00", "currency": "643", "purpose": "Оплата по счету № БЛ-000123 от 01.11.2026, в т.ч. НДС",
     "operation": "ОплатаПокупателя", "new_payer": false}

What the import does with a line, as the base would:

* the payer is found among ``Catalog_Контрагенты`` by ``ИНН`` (or ``НалоговыйНомер`` for a foreign payer), not
  marked for deletion. A payer the base does not know is created from the line (its own Ref_Key) when the line
  says ``new_payer``; otherwise the line waits for a later import (the stand-in's choice: in the demo the payers
  are billing's customers, whose counterparties Ledgerlink creates; real 1C would create them at once);
* the settlement contract is the payer's first selling contract, or a new "Основной договор" (1C creates one when
  the counterparty has none), in the statement's currency;
* the receipt (Ref_Key derived from the line's ``id``: importing a statement twice creates nothing twice) carries
  the organisation, payer, currency, amount, purpose, the bank's document number and date
  (``НомерВходящегоДокумента``/``ДатаВходящегоДокумента``) and one ``РасшифровкаПлатежа`` row; it is posted.

Each receipt created is registered for the exchange nodes like any other change.
"""
from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from .errors import ODataError
from .infobase import Infobase
from .schema import BANK_RECEIPTS, CONTRACTS, COUNTERPARTIES, CURRENCIES, ORGANISATIONS

log = logging.getLogger(__name__)
# Fixed: a line's receipt keeps its Ref_Key across restarts and imports.
STATEMENT_NAMESPACE = uuid.UUID("3b0f7f43-6d0e-4f3c-9c51-62616e6b7374")


def receipt_ref(line_id: str) -> str:
    return str(uuid.uuid5(STATEMENT_NAMESPACE, f"receipt/{line_id}"))


class BankStatementImport:
    """Imports the lines of ``path`` into ``infobase``; lines whose payer is not there yet wait."""

    def __init__(self, path: Path, infobase: Infobase):
        self.path = Path(path)
        self.infobase = infobase

    def lines(self) -> list[dict]:
        if not self.path.exists():
            return []
        return json.loads(self.path.read_text(encoding="utf-8"))

    def import_pending(self) -> dict:
        """Import every line not imported yet whose payer can be found (or created); returns the counts."""
        imported = waiting = refused = 0
        for line in self.lines():
            ref = receipt_ref(line["id"])
            if self.infobase.get(BANK_RECEIPTS, ref) is not None:
                continue
            payer = self._payer(line)
            if payer is None:
                waiting += 1
                continue
            try:
                with self.infobase.store.transaction():
                    self._create_receipt(ref, line, payer)
            except ODataError as e:  # a line the base refuses (say, a currency it lacks) does not stop the rest
                log.warning("1C bank statement: line %s refused: %s", line["id"], e.message)
                refused += 1
                continue
            imported += 1
        if imported:
            log.info("1C bank statement: %d receipt(s) imported, %d waiting for their payer", imported, waiting)
        return {"imported": imported, "waiting": waiting, "refused": refused}

    def _payer(self, line: dict) -> dict | None:
        inn = str(line["payer_inn"])
        for counterparty in self.infobase.all(COUNTERPARTIES):
            if not counterparty["DeletionMark"] and inn in (counterparty["ИНН"], counterparty["НалоговыйНомер"]):
                return counterparty
        if not line.get("new_payer"):
            return None
        return self.infobase.create(COUNTERPARTIES, {
            "Description": line["payer_name"][:100], "НаименованиеПолное": line["payer_name"], "ИНН": inn,
            "ЮридическоеФизическоеЛицо": "ЮридическоеЛицо", "Комментарий": "Создан при загрузке выписки"})

    def _create_receipt(self, ref: str, line: dict, payer: dict) -> None:
        organisation = self.infobase.all(ORGANISATIONS)[0]
        currency = next(c for c in self.infobase.all(CURRENCIES) if c["Code"] == line["currency"])
        contract = next((c for c in self.infobase.all(CONTRACTS)
                         if c["Owner_Key"] == payer["Ref_Key"] and c["ВидДоговора"] == "СПокупателем"
                         and not c["DeletionMark"]), None)
        if contract is None:
            contract = self.infobase.create(CONTRACTS, {
                "Ref_Key": str(uuid.uuid5(STATEMENT_NAMESPACE, f"contract/{payer['Ref_Key']}")),
                "Description": "Основной договор", "Owner_Key": payer["Ref_Key"],
                "Организация_Key": organisation["Ref_Key"], "ВидДоговора": "СПокупателем",
                "ВалютаВзаиморасчетов_Key": currency["Ref_Key"]})
        date = f"{line['date']}T00:00:00"
        self.infobase.create(BANK_RECEIPTS, {
            "Ref_Key": ref, "Date": date, "ВидОперации": line.get("operation", "ОплатаПокупателя"),
            "Организация_Key": organisation["Ref_Key"], "Контрагент_Key": payer["Ref_Key"],
            "ВалютаДокумента_Key": currency["Ref_Key"], "СуммаДокумента": line["amount"],
            "НазначениеПлатежа": line["purpose"], "НомерВходящегоДокумента": str(line["number"]),
            "ДатаВходящегоДокумента": date,
            "РасшифровкаПлатежа": [{"ДоговорКонтрагента_Key": contract["Ref_Key"], "СуммаПлатежа": line["amount"],
                                    "КурсВзаиморасчетов": "1", "СуммаВзаиморасчетов": line["amount"],
                                    "СтавкаНДС": "БезНДС", "СуммаНДС": "0",
                                    "СпособПогашенияЗадолженности": "Автоматически"}]})
        self.infobase.post(BANK_RECEIPTS, ref)


# The demo's statement ---------------------------------------------------------------------------------------------
def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _ddmmyyyy(iso_date: str) -> str:
    year, month, day = iso_date.split("-")
    return f"{day}.{month}.{year}"


def demo_statement(billing_db: Path, statement_date: str = "2026-11-14") -> list[dict]:
    """A day's incoming payments against billing's open invoices, one of each kind a payments flow must tell
    apart: paid in full naming the invoice (three spellings of its number, one Turkish), paid in full naming
    nothing (found by payer and amount), paid short, paid over, naming two invoices at once, and a payer billing
    does not know. Read from billing's database as generated (the stand-ins share the world's data, not code)."""
    import sqlite3

    with sqlite3.connect(billing_db) as db:
        rows = db.execute(
            "SELECT i.invoice_id, i.number, i.customer_id, i.currency, i.issue_date, "
            "i.gross_minor - COALESCE((SELECT SUM(p.amount_minor) FROM payments p "
            "WHERE p.invoice_id = i.invoice_id), 0),"
            " c.tax_id, c.legal_name FROM invoices i JOIN customers c ON c.customer_id = i.customer_id "
            "WHERE i.status = 'issued' AND i.gross_minor > 0 ORDER BY i.invoice_id").fetchall()
    invoices = [dict(zip(("invoice_id", "number", "customer_id", "currency", "issue_date", "open", "tax_id", "name"),
                         row)) for row in rows if row[5] > 0]
    per_customer: dict[str, list[dict]] = {}
    for invoice in invoices:
        per_customer.setdefault(invoice["customer_id"], []).append(invoice)
    used: set[str] = set()
    lines: list[dict] = []

    def pick(currency: str, open_invoices: int) -> list[dict] | None:
        for customer, theirs in per_customer.items():
            if customer not in used and theirs[0]["currency"] == currency and len(theirs) == open_invoices:
                used.add(customer)
                return theirs
        for customer, theirs in per_customer.items():  # fewer such customers than asked: any with as many
            if customer not in used and theirs[0]["currency"] == currency and len(theirs) >= open_invoices:
                used.add(customer)
                return theirs
        return None  # a small world: that case is left out of the statement

    def line(kind: str, invoice: dict, amount: int, purpose: str) -> None:
        lines.append({"id": f"{statement_date}-{len(lines) + 1:03d}-{kind}", "number": str(4100 + len(lines)),
                      "date": statement_date, "payer_inn": invoice["tax_id"], "payer_name": invoice["name"],
                      "amount": _money(amount), "currency": "643" if invoice["currency"] == "RUB" else "949",
                      "purpose": purpose, "operation": "ОплатаПокупателя", "new_payer": False})

    def paid(currency: str, kind: str, amount, purpose) -> None:
        found = pick(currency, 1)
        if found:
            invoice = found[0]
            line(kind, invoice, amount(invoice), purpose(invoice))

    paid("RUB", "matched", lambda i: i["open"],
         lambda i: f"Оплата по счету № {i['number']} от {_ddmmyyyy(i['issue_date'])}, в т.ч. НДС")
    paid("RUB", "matched", lambda i: i["open"],
         lambda i: f"оплата по сч.{i['number'].lower().replace('-', ' ')} за услуги связи")
    paid("TRY", "matched", lambda i: i["open"],
         lambda i: f"Fatura {i['number'][:3]} {i['number'][3:7]} {i['number'][7:]} ödemesi")
    paid("RUB", "matched", lambda i: i["open"], lambda i: "Оплата за услуги связи по договору, НДС не облагается")
    paid("RUB", "partial", lambda i: max(1, i["open"] // 2), lambda i: f"Частичная оплата по счету {i['number']}")
    paid("TRY", "overpaid", lambda i: i["open"] + 50_000, lambda i: f"Fatura no: {i['number']}")
    two = pick("RUB", 2)
    if two:
        g1, g2 = two[:2]
        line("ambiguous", g1, g1["open"] + g2["open"], f"Оплата по счетам {g1['number']}, {g2['number']}")
    lines.append({"id": f"{statement_date}-{len(lines) + 1:03d}-unknown", "number": str(4100 + len(lines)),
                  "date": statement_date, "payer_inn": "7707083893", "payer_name": "ПАО Неизвестный плательщик",
                  "amount": "15000.00", "currency": "643", "purpose": "Оплата по договору 77/2026 за обучение",
                  "operation": "ОплатаПокупателя", "new_payer": True})
    return lines


def write_demo_statement(billing_db: Path, path: Path) -> None:
    """The demo statement beside the infobase, written once (a restart imports nothing twice)."""
    if not path.exists():
        path.write_text(json.dumps(demo_statement(billing_db), ensure_ascii=False, indent=1), encoding="utf-8")
