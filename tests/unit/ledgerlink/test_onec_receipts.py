"""Reading 1C's change selection: an Atom feed parsed safely (no entity expansion), receipts and their tombstones
taken, other objects ignored, a receipt that cannot be keyed refused. The feed here is hand-written Atom (the
stand-in writes only well-formed answers; these are the hostile ones)."""
from __future__ import annotations

import pytest

from ledgerlink.errors import TerminalError
from ledgerlink.onec.receipts import ReceiptFeed, payment_id

REF = "6b1e2a3c-0000-4000-8000-00000000000a"
FEED = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"
      xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
      xmlns:at="http://purl.org/atompub/tombstones/1.0">
  <entry><category term="StandardODATA.Document_ПоступлениеНаРасчетныйСчет"/>
    <content type="application/xml"><m:properties>
      <d:Ref_Key m:type="Edm.Guid">{ref}</d:Ref_Key><d:Number>0000-000017</d:Number>
      <d:Date m:type="Edm.DateTime">2026-11-14T00:00:00</d:Date><d:Posted m:type="Edm.Boolean">true</d:Posted>
      <d:DeletionMark m:type="Edm.Boolean">false</d:DeletionMark><d:ВидОперации>ОплатаПокупателя</d:ВидОперации>
      <d:ВалютаДокумента_Key m:type="Edm.Guid">cur-1</d:ВалютаДокумента_Key>
      <d:Контрагент_Key m:type="Edm.Guid">CP-1</d:Контрагент_Key>
      <d:СуммаДокумента m:type="Edm.Double">1220.50</d:СуммаДокумента>
      <d:НазначениеПлатежа>Оплата по счету БЛ-000001</d:НазначениеПлатежа>
      <d:НомерВходящегоДокумента>4711</d:НомерВходящегоДокумента>
      <d:ДатаВходящегоДокумента m:type="Edm.DateTime">2026-11-13T00:00:00</d:ДатаВходящегоДокумента>
      <d:РасшифровкаПлатежа m:type="Collection(StandardODATA.Row)"><d:element><d:LineNumber>1</d:LineNumber>
      </d:element></d:РасшифровкаПлатежа>
    </m:properties></content></entry>
  <entry><category term="StandardODATA.Catalog_Контрагенты"/><content type="application/xml"><m:properties>
    <d:Ref_Key m:type="Edm.Guid">cp-2</d:Ref_Key></m:properties></content></entry>
  <at:deleted-entry ref="http://h/odata/standard.odata/Document_%D0%9F%D0%BE%D1%81%D1%82%D1%83%D0%BF%D0%BB%D0%B5%D0%BD%D0%B8%D0%B5%D0%9D%D0%B0%D0%A0%D0%B0%D1%81%D1%87%D0%B5%D1%82%D0%BD%D1%8B%D0%B9%D0%A1%D1%87%D0%B5%D1%82(guid'{gone}')" when="x"/>
  <at:deleted-entry ref="http://h/odata/standard.odata/Catalog_X(guid'{gone}')" when="x"/>
</feed>"""
BOMB = """<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
<feed xmlns="http://www.w3.org/2005/Atom">&b;</feed>"""


class Answer:
    def __init__(self, text: str):
        self.content = text.encode("utf-8")


class OneC:
    """Answers as 1C would to the three calls a read makes; ``feed`` is the SelectChanges body."""

    def __init__(self, feed: str):
        self.feed, self.calls = feed, []

    def list(self, entity_set, **_):
        if entity_set == "Catalog_Валюты":
            return [{"Ref_Key": "cur-1", "Code": "643"}]
        return [{"Ref_Key": "node-1", "Code": "PAYMENTS", "SentNo": "4"}]

    def node_url(self, plan, ref):
        return f"http://h/odata/standard.odata/{plan}(guid'{ref}')"

    def exchange_plan_call(self, function, node_url, message_no):
        self.calls.append((function, message_no))
        return Answer(self.feed)


def test_receipts_and_their_tombstones_are_taken_the_rest_ignored():
    gone = "6b1e2a3c-0000-4000-8000-00000000000b"
    onec = OneC(FEED.format(ref=REF, gone=gone))
    batch = ReceiptFeed(onec, exchange_node="PAYMENTS").read("2")
    assert onec.calls == [("SelectChanges", 5)]  # one past the node's SentNo, never a number used before
    (record,) = batch.records.to_dict("records")
    assert record == {"payment_id": payment_id(REF), "ref_key": REF, "number": "0000-000017", "amount": "1220.50",
                      "currency": "RUB", "paid_on": "2026-11-14", "counterparty_ref": "cp-1",
                      "purpose": "Оплата по счету БЛ-000001", "reference": "п/п № 4711 от 13.11.2026", "posted": True}
    assert batch.deleted == [payment_id(gone)] and batch.ignored == 2 and batch.position == "5"


def test_an_entity_bomb_and_a_receipt_without_its_key_are_refused():
    with pytest.raises(TerminalError, match="not a safe Atom feed"):
        ReceiptFeed(OneC(BOMB), exchange_node="PAYMENTS").read(None)
    keyless = FEED.format(ref="", gone="x")
    with pytest.raises(TerminalError, match="without its Ref_Key"):
        ReceiptFeed(OneC(keyless), exchange_node="PAYMENTS").read(None)
