"""1C's bank receipts (``Document_ПоступлениеНаРасчетныйСчет``) as a change feed: what was registered since the
last message we acknowledged, read the way the connection allows.

* **Exchange plan** (the connection's extra names a node: ``{"exchange_node": "PAYMENTS"}``, optionally
  ``"exchange_plan": "ExchangePlan_Ledgerlink"``): ``POST SelectChanges?DataExchangePoint='<node URL>'&MessageNo=N``
  (guide §17.4.13.3) answers every change still registered for the node as an Atom feed, a deleted object as an
  ``at:deleted-entry``; ``NotifyChangesReceived`` with the same N forgets them. Changes stay registered until
  then, so a run that dies before acknowledging reads them again. N is one more than the node's ``SentNo`` (and
  than the last number we used): each selection its own number, never reused. The node's other objects (a plan
  registers whatever its content says) are read and acknowledged with the receipts; this flow ignores them, so a
  node of its own is the way to publish it.
* **Watermark** (no node named): receipts whose ``Date`` is on or after the last date read, less a lookback
  (``"lookback_days"``, 7 by default: a receipt is often booked days after its date), with ``$filter``. What
  changed is told by content against what the ledger acknowledged (``DataVersion`` is an opaque stamp, not an
  order). A receipt marked for deletion or unposted is seen (it moves); one deleted outright is not: without an
  exchange plan 1C says nothing of objects that are gone. Nothing to acknowledge in 1C.

Each receipt becomes one record: ``payment_id`` (``1C-`` + its Ref_Key), ``amount`` (1C's exact decimal text),
``currency`` (ISO 4217 from ``Catalog_Валюты``'s ОКВ code; empty for one billing does not know), ``paid_on``,
``counterparty_ref``, ``purpose``, ``reference`` (the bank's document number and date) and ``posted`` (posted,
not marked for deletion, and a customer's payment: ``ОплатаПокупателя``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
import pandas as pd
from defusedxml import DefusedXmlException

from ledgerlink.errors import ConfigurationError, TerminalError
from ledgerlink.onec.client import ODataClient

log = logging.getLogger(__name__)
RECEIPTS = "Document_ПоступлениеНаРасчетныйСчет"
CURRENCIES = "Catalog_Валюты"
DEFAULT_EXCHANGE_PLAN = "ExchangePlan_Ledgerlink"
CUSTOMER_PAYMENT = "ОплатаПокупателя"
PAYMENT_PREFIX = "1C-"
EMPTY_DATE = "0001-01-01T00:00:00"
# ОКВ (the Russian classifier 1C keys currencies by) -> ISO 4217.
ISO_BY_OKV = {"643": "RUB", "949": "TRY", "840": "USD", "978": "EUR"}
COLUMNS = ["payment_id", "ref_key", "number", "amount", "currency", "paid_on", "counterparty_ref", "purpose",
           "reference", "posted"]
ATOM = "{http://www.w3.org/2005/Atom}"
DATA = "{http://schemas.microsoft.com/ado/2007/08/dataservices}"
METADATA = "{http://schemas.microsoft.com/ado/2007/08/dataservices/metadata}"
TOMBSTONES = "{http://purl.org/atompub/tombstones/1.0}"
_KEY_IN_URL = re.compile(r"(?P<set>[^/(]+)\(guid'(?P<guid>[0-9a-fA-F-]{36})'\)$")


def payment_id(ref_key: str) -> str:
    """Billing's payment key for a receipt: derived from 1C's Ref_Key, the same on every run."""
    return PAYMENT_PREFIX + str(ref_key).lower()


@dataclass
class FeedBatch:
    """What one read of a change feed gave: the records, the keys deleted at the source, the position to
    acknowledge once they are applied, and how many changes of other kinds came along (ignored)."""

    records: pd.DataFrame
    deleted: list[str]
    position: str
    ignored: int = 0
    notes: list[str] = field(default_factory=list)


class ReceiptFeed:
    """Receipts registered in 1C since the last acknowledged read (see the module doc for the two modes)."""

    def __init__(self, client: ODataClient, *, exchange_node: str | None = None,
                 exchange_plan: str = DEFAULT_EXCHANGE_PLAN, lookback_days: int = 7):
        self.client = client
        self.exchange_node = exchange_node
        self.exchange_plan = exchange_plan
        self.lookback = timedelta(days=lookback_days)
        self._node_url: str | None = None

    @property
    def mode(self) -> str:
        return "exchange_plan" if self.exchange_node else "watermark"

    @property
    def position_name(self) -> str:
        """What a position is, as the ledger's watermark is named."""
        return f"message_no:{self.exchange_node}" if self.exchange_node else "receipt_date"

    @property
    def name(self) -> str:
        return (f"1C {RECEIPTS} (exchange plan node {self.exchange_node})" if self.exchange_node
                else f"1C {RECEIPTS} (by Date)")

    def read(self, after: str | None) -> FeedBatch:
        """The receipts registered since ``after`` (the last acknowledged position, or None)."""
        currencies = {row["Ref_Key"]: str(row.get("Code") or "")
                      for row in self.client.list(CURRENCIES, select=["Ref_Key", "Code"])}
        if self.exchange_node:
            return self._select_changes(after, currencies)
        return self._by_date(after, currencies)

    def acknowledge(self, position: str) -> None:
        """Tell 1C the changes of message ``position`` are applied (exchange plan); nothing to say otherwise."""
        if self.exchange_node:
            self.client.exchange_plan_call("NotifyChangesReceived", self._node(), int(position))
            log.info("1C: changes of message %s acknowledged for node %s", position, self.exchange_node)

    # exchange plan -------------------------------------------------------------------------------------------
    def _node(self, node: dict | None = None) -> str:
        if self._node_url is None:
            node = node or self._node_record()
            self._node_url = self.client.node_url(self.exchange_plan, node["Ref_Key"])
        return self._node_url

    def _node_record(self) -> dict:
        code = self.exchange_node.replace("'", "''")
        found = list(self.client.list(self.exchange_plan, filter=f"Code eq '{code}'"))
        if not found:
            raise ConfigurationError(f"1C has no node {self.exchange_node!r} in {self.exchange_plan}: create it in "
                                     f"1C, or name an existing one in the connection's extra (exchange_node)")
        return found[0]

    def _select_changes(self, after: str | None, currencies: dict[str, str]) -> FeedBatch:
        node = self._node_record()
        message_no = max(int(node.get("SentNo") or 0), int(after or 0)) + 1
        response = self.client.exchange_plan_call("SelectChanges", self._node(node), message_no)
        try:
            feed = SafeET.fromstring(response.content)
        except (ParseError, DefusedXmlException) as e:
            raise TerminalError(f"1C answered SelectChanges (message {message_no}) with something that is not a "
                                f"safe Atom feed: {e}") from e
        records, deleted, ignored = [], [], 0
        for element in feed:
            if element.tag == f"{ATOM}entry":
                entity_set, body = _atom_entry(element)
                if entity_set == RECEIPTS and not body.get("Ref_Key"):
                    raise TerminalError(f"1C's SelectChanges message {message_no} holds a {RECEIPTS} entry without "
                                        f"its Ref_Key: the changes stay registered; ask 1C's administrator")
                if entity_set == RECEIPTS:
                    records.append(to_record(body, currencies))
                else:
                    ignored += 1
            elif element.tag == f"{TOMBSTONES}deleted-entry":
                found = _KEY_IN_URL.search(unquote(element.get("ref", "")))
                if found and found["set"] == RECEIPTS:
                    deleted.append(payment_id(found["guid"]))
                else:
                    ignored += 1
        log.info("1C SelectChanges message %d for node %s: %d receipt(s), %d deleted, %d other change(s)",
                 message_no, self.exchange_node, len(records), len(deleted), ignored)
        return FeedBatch(_frame(records), deleted, str(message_no), ignored)

    # watermark -----------------------------------------------------------------------------------------------
    def _by_date(self, after: str | None, currencies: dict[str, str]) -> FeedBatch:
        query = None
        if after:
            since = date.fromisoformat(after[:10]) - self.lookback
            query = f"Date ge datetime'{since.isoformat()}T00:00:00'"
        # Paged with $top/$skip: the order must be total (many receipts share a Date), or a page could repeat or
        # skip one.
        records = [to_record(row, currencies)
                   for row in self.client.list(RECEIPTS, filter=query, orderby="Date,Ref_Key")]
        seen = ([after[:10]] if after else []) + [r["paid_on"] for r in records if r["paid_on"]]
        log.info("1C %s since %s: %d receipt(s)", RECEIPTS, query or "the beginning", len(records))
        return FeedBatch(_frame(records), [], max(seen) if seen else "")


def to_record(receipt: dict, currencies: dict[str, str]) -> dict:
    """One receipt as the flow's record (see the module doc)."""
    okv = currencies.get(str(receipt.get("ВалютаДокумента_Key") or ""), "")
    when = str(receipt.get("Date") or "")
    incoming_no, incoming_date = str(receipt.get("НомерВходящегоДокумента") or ""), \
        str(receipt.get("ДатаВходящегоДокумента") or "")
    if incoming_no:
        reference = f"п/п № {incoming_no}" + (f" от {_dmy(incoming_date)}" if incoming_date[:10] not in
                                               ("", EMPTY_DATE[:10]) else "")
    else:
        reference = f"1C {receipt.get('Number') or ''} от {_dmy(when)}"
    amount = receipt.get("СуммаДокумента")
    return {
        "payment_id": payment_id(receipt["Ref_Key"]),
        "ref_key": str(receipt["Ref_Key"]).lower(),
        "number": str(receipt.get("Number") or ""),
        "amount": None if amount is None else (format(amount, "f") if isinstance(amount, Decimal) else str(amount)),
        "currency": ISO_BY_OKV.get(okv),
        "paid_on": when[:10] if when[:10] not in ("", EMPTY_DATE[:10]) else None,
        "counterparty_ref": str(receipt.get("Контрагент_Key") or "").lower() or None,
        "purpose": str(receipt.get("НазначениеПлатежа") or ""),
        "reference": reference,
        "posted": bool(receipt.get("Posted")) and not bool(receipt.get("DeletionMark"))
        and str(receipt.get("ВидОперации") or CUSTOMER_PAYMENT) == CUSTOMER_PAYMENT,
    }


def _dmy(iso: str) -> str:
    return f"{iso[8:10]}.{iso[5:7]}.{iso[:4]}" if len(iso) >= 10 else iso


def _frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=COLUMNS)
    frame["posted"] = frame["posted"].astype(bool)
    return frame


def _atom_entry(entry: Element) -> tuple[str | None, dict]:
    """An Atom entry's entity set (from its category term ``StandardODATA.<Set>``) and its properties, typed:
    booleans as bool, numbers as exact Decimal text kept as Decimal, nulls as None, collections as lists."""
    category = entry.find(f"{ATOM}category")
    term = category.get("term", "") if category is not None else ""
    entity_set = term.split(".", 1)[1] if "." in term else None
    properties = entry.find(f"{ATOM}content/{METADATA}properties")
    return entity_set, ({} if properties is None else _properties(properties))


def _properties(element: Element) -> dict:
    return {child.tag.removeprefix(DATA): _value(child) for child in element if child.tag.startswith(DATA)}


def _value(element: Element):
    if element.get(f"{METADATA}null") == "true":
        return None
    edm = element.get(f"{METADATA}type", "Edm.String")
    if edm.startswith("Collection("):
        return [_properties(row) for row in element if row.tag == f"{DATA}element"]
    text = element.text or ""
    if edm == "Edm.Boolean":
        return text.strip().lower() == "true"
    if edm in ("Edm.Decimal", "Edm.Double", "Edm.Single"):
        return Decimal(text.strip()) if text.strip() else None
    return text
