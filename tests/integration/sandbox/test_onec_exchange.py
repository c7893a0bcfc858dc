"""The 1C stand-in's file exchange: EnterpriseData messages and CSV registers dropped in its exchange folder."""
from __future__ import annotations

import hashlib
import time
import uuid
from decimal import Decimal

import defusedxml.ElementTree as SafeET
import pytest
import requests

from sandbox.onec.server import make_server
from tests.support.sandbox_http import serving

ED = "http://v8.1c.ru/edi/edi_stnd/EnterpriseData/1.8"
COUNTERPARTIES = "Catalog_Контрагенты"
SALES = "Document_РеализацияТоваровУслуг"
ROMASHKA, CONTRACT, PRODUCT, DOC = (str(uuid.uuid4()) for _ in range(4))


@pytest.fixture
def onec(tmp_path):
    server = make_server("127.0.0.1", 0, db_path=tmp_path / "onec.sqlite", users={"ledgerlink": "secret"},
                         base="/demo", exchange_dir=tmp_path / "exchange", exchange_poll_seconds=None)
    with serving(server):
        yield server


def dump(server, entity_set: str) -> list[dict]:
    response = requests.get(server.url + "/_sandbox/onec/dump", params={"set": entity_set}, timeout=5)
    return response.json(parse_float=Decimal)["value"]  # decimals stay exact


def run(server) -> list[dict]:
    response = requests.post(server.url + "/_sandbox/onec/exchange/run", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def message(message_no: int, body: str, sender: str = "BILLING", confirmation: bool = False) -> bytes:
    header = (f"<ExchangePlan>Ledgerlink</ExchangePlan><From>{sender}</From><To>1C</To>"
              f"<MessageNo>{message_no}</MessageNo><ReceivedNo>0</ReceivedNo>")
    if confirmation:  # as 1C's SSL writes it: the numbers inside msg:Confirmation, another namespace
        header = f'<m:Confirmation xmlns:m="http://www.1c.ru/SSL/Exchange/Message">{header}</m:Confirmation>'
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Message xmlns="{ED}"><Header><Format>{ED}</Format>'
            f"{header}</Header><Body>{body}</Body></Message>").encode("utf-8")


OUR_INN = "7701452833"  # the organisation the stand-in's base holds from the start


def sale(amount: str = "1220.00", posted: str = "true", counterparty_name: str = "ООО Ромашка",
         currency: str = "643", rate: str = "НДС22") -> str:
    return f"""
    <Документ.РеализацияТоваровУслуг>
      <КлючевыеСвойства><Ссылка>{DOC}</Ссылка><Дата>2026-01-31T00:00:00</Дата><Номер>INV-1</Номер></КлючевыеСвойства>
      <ВидОперации>Услуги</ВидОперации><Организация><ИНН>{OUR_INN}</ИНН></Организация>
      <Контрагент><Ссылка>{ROMASHKA}</Ссылка><Наименование>{counterparty_name}</Наименование></Контрагент>
      <Договор><Ссылка>{CONTRACT}</Ссылка><Наименование>Договор 1</Наименование>
        <ВидДоговора>СПокупателем</ВидДоговора><Организация><ИНН>{OUR_INN}</ИНН></Организация>
        <ВалютаВзаиморасчетов><Код>{currency}</Код></ВалютаВзаиморасчетов>
        <Владелец><Ссылка>{ROMASHKA}</Ссылка></Владелец></Договор>
      <Валюта><Код>{currency}</Код></Валюта><Сумма>{amount}</Сумма><СуммаВключаетНДС>true</СуммаВключаетНДС>
      <Проведен>{posted}</Проведен>
      <Услуги>
        <Строка><Номенклатура><Ссылка>{PRODUCT}</Ссылка><Наименование>Связь</Наименование>
          <Услуга>true</Услуга><ЕдиницаИзмерения><Код>876</Код></ЕдиницаИзмерения></Номенклатура>
          <Содержание>Конференц-связь, январь</Содержание><Количество>1</Количество><Цена>1000.00</Цена>
          <Сумма>1000.00</Сумма><СтавкаНДС>{rate}</СтавкаНДС><СуммаНДС>220.00</СуммаНДС></Строка>
      </Услуги>
    </Документ.РеализацияТоваровУслуг>"""


def seeded(server, entity_set: str, code: str) -> str:
    return next(r["Ref_Key"] for r in dump(server, entity_set) if r["Code"] == code)


def counterparty_xml(name: str = "ООО Ромашка", inn: str = "7701234567") -> str:
    return f"""
    <Справочник.Контрагенты><КлючевыеСвойства><Ссылка>{ROMASHKA}</Ссылка><Наименование>{name}</Наименование>
      <ИНН>{inn}</ИНН><КПП>770101001</КПП><ЮридическоеФизическоеЛицо>ЮридическоеЛицо</ЮридическоеФизическоеЛицо>
      </КлючевыеСвойства><Комментарий>из обмена</Комментарий></Справочник.Контрагенты>"""


def test_a_message_is_applied_moved_and_acknowledged(onec, tmp_path):
    exchange = tmp_path / "exchange"
    # The same counterparty twice in one message: one object, the last values win.
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(
        message(7, counterparty_xml(inn="0000000000") + counterparty_xml() + sale(), confirmation=True))
    [result] = run(onec)
    assert result == {"file": "Message_BILLING_1C.xml", "outcome": "applied", "objects": 3, "message_no": 7,
                      "error": None}
    assert (exchange / "processed" / "Message_BILLING_1C.xml").exists()
    assert not any((exchange / "in").iterdir())

    [counterparty] = dump(onec, COUNTERPARTIES)
    assert (counterparty["Ref_Key"], counterparty["ИНН"], counterparty["Комментарий"]) == (
        ROMASHKA, "7701234567", "из обмена")
    [document] = dump(onec, SALES)
    assert document["Posted"] is True and document["Number"] == "INV-1"
    assert str(document["СуммаДокумента"]) == "1220.00" and document["ДоговорКонтрагента_Key"] == CONTRACT
    assert document["Услуги"][0]["Номенклатура_Key"] == PRODUCT and str(document["Услуги"][0]["СуммаНДС"]) == "220.00"
    assert document["Услуги"][0]["СтавкаНДС"] == "НДС22" and document["СуммаВключаетНДС"] is True
    rubles = seeded(onec, "Catalog_Валюты", "643")
    assert document["ВалютаДокумента_Key"] == rubles and document["ВидОперации"] == "Услуги"
    assert document["Организация_Key"] == dump(onec, "Catalog_Организации")[0]["Ref_Key"]
    # Created from the references' key properties: the item with its unit, the contract with its currency.
    [item] = dump(onec, "Catalog_Номенклатура")
    assert item["Услуга"] is True
    assert item["ЕдиницаИзмерения_Key"] == seeded(onec, "Catalog_КлассификаторЕдиницИзмерения", "876")
    [contract] = dump(onec, "Catalog_ДоговорыКонтрагентов")
    assert (contract["ВидДоговора"], contract["ВалютаВзаиморасчетов_Key"]) == ("СПокупателем", rubles)

    ack = SafeET.parse(exchange / "out" / "Message_1C_BILLING.xml").getroot()
    msg = "http://www.1c.ru/SSL/Exchange/Message"  # as 1C's БСП writes its messages
    header = {el.tag.split("}")[1]: el.text for el in ack.find(f"{{{msg}}}Header").iter()}
    assert ack.tag == "Message" and ack.find(f"{{{ED}}}Body") is not None
    assert header["Format"] == ED and header["AvailableVersion"] == "1.8"
    assert header["From"] == "1C" and header["To"] == "BILLING" and header["ReceivedNo"] == "7"
    assert header["ExchangePlan"] == "Ledgerlink" and int(header["MessageNo"]) >= 1
    assert not [p for p in (exchange / "out").iterdir() if p.name.startswith(".")]

    # Arrivals from BILLING are not registered back to BILLING.
    assert requests.get(onec.url + "/_sandbox/onec/changes", timeout=5).json()["value"] == []


def test_a_document_marked_for_deletion_is_unposted_and_kept(onec, tmp_path):
    exchange = tmp_path / "exchange"
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(message(1, sale()))
    assert [r["outcome"] for r in run(onec)] == ["applied"]
    assert [(d["Posted"], d["DeletionMark"]) for d in dump(onec, SALES)] == [(True, False)]
    cancelled = sale(posted="false").replace("<Проведен>", "<ПометкаУдаления>true</ПометкаУдаления><Проведен>")
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(message(2, cancelled))
    assert [r["outcome"] for r in run(onec)] == ["applied"]
    assert [(d["Ref_Key"], d["Posted"], d["DeletionMark"]) for d in dump(onec, SALES)] == [(DOC, False, True)]


def test_a_message_number_already_received_is_acknowledged_again_not_reapplied(onec, tmp_path):
    inbox = tmp_path / "exchange" / "in"
    (inbox / "Message_BILLING_1C.xml").write_bytes(message(3, counterparty_xml()))
    assert run(onec)[0]["outcome"] == "applied"
    requests.post(onec.url + "/_sandbox/onec/edit", timeout=5, json={
        "set": COUNTERPARTIES, "ref_key": ROMASHKA, "changes": {"Description": "изменено в 1С"}})
    (inbox / "Message_BILLING_1C.xml").write_bytes(message(3, counterparty_xml("старое имя")))
    assert run(onec)[0]["outcome"] == "already_received"
    assert dump(onec, COUNTERPARTIES)[0]["Description"] == "изменено в 1С"
    processed = sorted(p.name for p in (tmp_path / "exchange" / "processed").iterdir())
    assert processed == ["Message_BILLING_1C.xml", "Message_BILLING_1C.xml.1"]  # evidence kept, not overwritten
    assert (tmp_path / "exchange" / "out" / "Message_1C_BILLING.xml").exists()


@pytest.mark.parametrize("content, problem", [
    (b"<Message><Header>", "well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x "y">]><Message>&x;</Message>', "unsafe"),
    (message(1, counterparty_xml(), sender="STRANGER"), "STRANGER"),
    (message(1, "<Справочник.Банки><Ссылка>x</Ссылка></Справочник.Банки>"), "Справочник.Банки"),
    (message(1, "<Справочник.Контрагенты><Наименование>без ссылки</Наименование></Справочник.Контрагенты>"),
     "Ссылка"),
    (message(1, sale(amount="много")), "СуммаДокумента"),
    (message(1, sale(currency="999")), "no Catalog_Валюты with Code '999'"),
    (message(1, sale(rate="НДС99")), "СтавкиНДС"),
    (b'<Message><Header><ExchangePlan>Ledgerlink</ExchangePlan><From>BILLING</From><To>1C</To>'
     b"<MessageNo>1</MessageNo></Header><Body/></Message>", "EnterpriseData"),
])
def test_a_bad_file_goes_to_error_with_its_reason_and_changes_nothing(onec, tmp_path, content, problem):
    exchange = tmp_path / "exchange"
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(content)
    [result] = run(onec)
    assert result["outcome"] == "error" and problem in result["error"]
    assert (exchange / "error" / "Message_BILLING_1C.xml").exists()
    assert problem in (exchange / "error" / "Message_BILLING_1C.xml.error.txt").read_text(encoding="utf-8")
    assert dump(onec, COUNTERPARTIES) == [] and dump(onec, SALES) == []
    assert not (exchange / "out" / "Message_1C_BILLING.xml").exists()


def test_a_posting_failure_rejects_the_whole_file(onec, tmp_path):
    exchange = tmp_path / "exchange"
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(message(1, counterparty_xml()))
    run(onec)
    requests.post(onec.url + "/_sandbox/onec/edit", timeout=5, json={
        "set": COUNTERPARTIES, "ref_key": ROMASHKA, "changes": {"DeletionMark": True}})
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(message(2, sale()))
    [result] = run(onec)
    assert result["outcome"] == "error" and "помечен на удаление" in result["error"]
    assert dump(onec, SALES) == [] and dump(onec, "Catalog_Номенклатура") == []  # rolled back whole


def test_files_still_uploading_are_left_alone(onec, tmp_path):
    inbox = tmp_path / "exchange" / "in"
    for name in (".Message_BILLING_1C.xml", "Message_BILLING_1C.xml.part", "Message_BILLING_1C.xml.tmp"):
        (inbox / name).write_bytes(b"<incomplete")
    assert run(onec) == []
    assert len(list(inbox.iterdir())) == 3


def test_a_checksum_manifest_is_verified_and_travels_with_its_file(onec, tmp_path):
    exchange = tmp_path / "exchange"
    good = message(1, counterparty_xml())
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(good)
    (exchange / "in" / "Message_BILLING_1C.xml.sha256").write_text(
        f"{hashlib.sha256(good).hexdigest()}  Message_BILLING_1C.xml\n", encoding="utf-8")
    assert run(onec)[0]["outcome"] == "applied"
    assert (exchange / "processed" / "Message_BILLING_1C.xml.sha256").exists()
    (exchange / "in" / "Message_BILLING_1C.xml").write_bytes(message(2, counterparty_xml("подменено")))
    (exchange / "in" / "Message_BILLING_1C.xml.sha256").write_text(hashlib.sha256(good).hexdigest(), encoding="utf-8")
    [result] = run(onec)
    assert result["outcome"] == "error" and "checksum" in result["error"]
    assert (exchange / "error" / "Message_BILLING_1C.xml.sha256").exists()


def test_csv_register_in_windows_1251(onec, tmp_path):
    other = str(uuid.uuid4())
    text = ("Ref_Key;Description;ИНН;НалоговыйНомер;DeletionMark\r\n"
            f"{ROMASHKA};ООО «Ромашка»;7701234567;;нет\r\n"
            f"{other};Ankara Telekom A.S.;;1234567890;0\r\n")
    (tmp_path / "exchange" / "in" / "counterparties.cp1251.csv").write_bytes(text.encode("cp1251"))
    [result] = run(onec)
    assert result["outcome"] == "applied" and result["objects"] == 2
    names = {c["Ref_Key"]: c["Description"] for c in dump(onec, COUNTERPARTIES)}
    assert names == {ROMASHKA: "ООО «Ромашка»", other: "Ankara Telekom A.S."}
    # Rows are upserts, and empty cells leave values as they are.
    (tmp_path / "exchange" / "in" / "counterparties.csv").write_text(
        f"Ref_Key;ИНН;Description\n{ROMASHKA};7701999999;\n", encoding="utf-8")
    run(onec)
    [romashka] = [c for c in dump(onec, COUNTERPARTIES) if c["Ref_Key"] == ROMASHKA]
    assert (romashka["ИНН"], romashka["Description"]) == ("7701999999", "ООО «Ромашка»")


@pytest.mark.parametrize("name, content, problem", [
    ("counterparties.utf-8.csv", "Ref_Key;Description\nx;ООО\n".encode("cp1251"), "decode"),
    ("counterparties.csv", "Ref_Key;Нет\n1;2\n".encode("utf-8"), "Нет"),
    ("banks.csv", b"Ref_Key\n", "kind"),
    ("counterparties.koi8.csv", b"Ref_Key\n", "encoding"),
    ("counterparties.xlsx", b"PK", "unsupported file type"),
])
def test_bad_csv_registers_go_to_error(onec, tmp_path, name, content, problem):
    (tmp_path / "exchange" / "in" / name).write_bytes(content)
    [result] = run(onec)
    assert result["outcome"] == "error" and problem in result["error"], result
    assert (tmp_path / "exchange" / "error" / f"{name}.error.txt").exists()


def test_the_background_poll_takes_dropped_files(tmp_path):
    server = make_server("127.0.0.1", 0, db_path=tmp_path / "onec.sqlite", users={"ledgerlink": "secret"},
                         exchange_dir=tmp_path / "exchange", exchange_poll_seconds=0.1)
    server.start_in_thread()
    try:
        (tmp_path / "exchange" / "in" / "Message_BILLING_1C.xml").write_bytes(message(1, counterparty_xml()))
        deadline = time.monotonic() + 5
        while not (tmp_path / "exchange" / "out" / "Message_1C_BILLING.xml").exists():
            assert time.monotonic() < deadline, "the poller did not take the file"
            time.sleep(0.05)
        assert [c["Ref_Key"] for c in dump(server, COUNTERPARTIES)] == [ROMASHKA]
    finally:
        server.shutdown()
        server.server_close()


def test_process_exchange_folder_is_callable_in_python(onec, tmp_path):
    (tmp_path / "exchange" / "in" / "Message_BILLING_1C.xml").write_bytes(message(1, counterparty_xml()))
    [result] = onec.process_exchange_folder()
    assert result.outcome == "applied" and result.message_no == 1
