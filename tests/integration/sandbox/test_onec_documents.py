"""The 1C stand-in's contracts, nomenclature and documents in their БП 3.0 shape, through plain HTTP: what
``$metadata`` declares, a document with its tabular part going and coming back, references resolved by
navigation, the reference catalogs a base holds from the start, and values 1C refuses (see
``sandbox.onec.schema`` for the source of each shape)."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import defusedxml.ElementTree as SafeET
import pytest
import requests

from tests.integration.sandbox.test_onec_odata import (
    CONTRACTS, COUNTERPARTIES, CURRENCIES, ORGANISATIONS, PRODUCTS, RECEIPTS, SALES, UNITS, VAT_INVOICES,
    contract, counterparty, error_code, organisation, sale, seeded,
)
from tests.support.onec_standin import Api, api, onec, start  # noqa: F401 - fixtures
from tests.support.sandbox_http import serving

EDM = "{http://schemas.microsoft.com/ado/2009/11/edm}"
ACCOUNTS = "ChartOfAccounts_Хозрасчетный"
SEEDED = {CURRENCIES: {"643", "949", "840", "978"}, UNITS: {"796", "876", "355"}, ORGANISATIONS: {"00-000001"},
          ACCOUNTS: {"51", "62.01", "62.02"}}





def service_item(api: Api, name: str = "Конференц-связь") -> dict:
    """A service item measured in conventional units (ОКЕИ 876), as a БП 3.0 base keeps one."""
    return api.create(PRODUCTS, Description=name, Услуга=True, ВидСтавкиНДС="Общая",
                      ЕдиницаИзмерения_Key=seeded(api, UNITS, "876"))


def exact(api: Api, path: str) -> dict:
    """An object read back with its numbers as exact decimals."""
    response = api("GET", path)
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def refused(response: requests.Response, *words: str) -> bool:
    """A business error as 1C answers one: HTTP 500, code -1, a message naming what is wrong."""
    message = response.json()["odata.error"]["message"]["value"]
    return response.status_code == 500 and error_code(response) == "-1" and all(w in message for w in words)


# $metadata
def test_metadata_declares_the_bp30_shapes(api):
    root = SafeET.fromstring(api("GET", "$metadata").content)
    props = {t.get("Name"): {p.get("Name"): p for p in t.iter(f"{EDM}Property")}
             for t in root.iter(f"{EDM}EntityType")}
    ends = {a.get("Name"): a.findall(f"{EDM}End")[1].get("Type").removeprefix("StandardODATA.")
            for a in root.iter(f"{EDM}Association")}
    navigation = {t.get("Name"): {n.get("Name") for n in t.iter(f"{EDM}NavigationProperty")}
                  for t in root.iter(f"{EDM}EntityType")}

    contracts = props[CONTRACTS]
    assert {n: contracts[n].get("Type") for n in ("Owner_Key", "Организация_Key", "ВалютаВзаиморасчетов_Key",
                                                   "ВидДоговора", "Дата", "Parent_Key")} == {
        "Owner_Key": "Edm.Guid", "Организация_Key": "Edm.Guid", "ВалютаВзаиморасчетов_Key": "Edm.Guid",
        "ВидДоговора": "Edm.String", "Дата": "Edm.DateTime", "Parent_Key": "Edm.Guid"}
    assert "ВалютаВзаиморасчетов" not in contracts and contracts["Code"].get("MaxLength") == "9"
    assert ends[f"{CONTRACTS}_ВалютаВзаиморасчетов"] == CURRENCIES
    assert ends[f"{CONTRACTS}_Организация"] == ORGANISATIONS

    products = props[PRODUCTS]
    assert products["ЕдиницаИзмерения_Key"].get("Type") == "Edm.Guid" and products["Code"].get("MaxLength") == "11"
    assert "ЕдиницаИзмерения" not in products and "СтавкаНДС" not in products  # the rate is the row's
    assert ends[f"{PRODUCTS}_ЕдиницаИзмерения"] == UNITS

    assert props[SALES]["ВалютаДокумента_Key"].get("Type") == "Edm.Guid" and "ВалютаДокумента" not in props[SALES]
    assert props[SALES]["СуммаВключаетНДС"].get("Type") == "Edm.Boolean"
    assert props[SALES]["КратностьВзаиморасчетов"].get("Type") == "Edm.Int64"
    assert ends[f"{SALES}_СчетУчетаРасчетовСКонтрагентом"] == ACCOUNTS
    assert props[f"{SALES}_Услуги"]["СтавкаНДС"].get("Type") == "Edm.String"

    invoice = props[VAT_INVOICES]
    assert (invoice["ДокументОснование"].get("Type"), invoice["ДокументОснование_Type"].get("Type")) == (
        "Edm.String", "Edm.String")
    assert "ДокументОснование" not in navigation[VAT_INVOICES]  # a composite type has no navigation property
    assert invoice["КодВидаОперации"].get("MaxLength") == "2"

    receipt_rows = props[f"{RECEIPTS}_РасшифровкаПлатежа"]
    assert receipt_rows["ДоговорКонтрагента_Key"].get("Type") == "Edm.Guid"
    assert receipt_rows["СуммаПлатежа"].get("Type") == "Edm.Double"
    assert {ORGANISATIONS, CURRENCIES, UNITS, ACCOUNTS} <= {e.get("Name") for e in root.iter(f"{EDM}EntitySet")}


# a document and its tabular part
def test_a_sale_with_its_services_goes_and_comes_back_whole(api):
    buyer = counterparty(api)["Ref_Key"]
    item = service_item(api)["Ref_Key"]
    rows = [{"Номенклатура_Key": item, "Содержание": "Конференц-связь, январь", "Количество": 1, "Цена": "1000.00",
             "Сумма": "1000.00", "СтавкаНДС": "НДС22", "СуммаНДС": "180.33"},
            {"Номенклатура_Key": item, "Содержание": "Запись, январь", "Количество": "2.5", "Цена": "10.10",
             "Сумма": "25.25", "СтавкаНДС": "БезНДС", "СуммаНДС": 0}]
    created = sale(api, buyer, Number="0000-000017", Date="2026-01-31T00:00:00", СуммаВключаетНДС=True,
                   СуммаДокумента="1025.25", КурсВзаиморасчетов=1, КратностьВзаиморасчетов="1",
                   СчетУчетаРасчетовСКонтрагентом_Key=seeded(api, ACCOUNTS, "62.01"), Услуги=rows)
    again = exact(api, f"{SALES}(guid'{created['Ref_Key']}')")
    assert again.keys() == created.keys()  # the POST answer is the object as GET shows it
    assert {k: v for k, v in again.items() if isinstance(v, (str, bool))} == {
        k: v for k, v in created.items() if isinstance(v, (str, bool))}
    assert again["ВидОперации"] == "Услуги" and again["СуммаВключаетНДС"] is True
    assert (again["КратностьВзаиморасчетов"], again["СуммаДокумента"]) == ("1", Decimal("1025.25"))
    numbers = ("Количество", "Цена", "Сумма", "СуммаНДС")
    assert [{k: r[k] for k in rows[0]} for r in again["Услуги"]] == [
        {k: Decimal(str(v)) if k in numbers else v for k, v in row.items()} for row in rows]
    assert str(again["Услуги"][1]["Цена"]) == "10.10"  # the decimal text as sent
    assert [(r["LineNumber"], r["Ref_Key"]) for r in again["Услуги"]] == [("1", created["Ref_Key"]),
                                                                        ("2", created["Ref_Key"])]
    row_set = api.rows(f"{SALES}_Услуги", **{"$filter": "СтавкаНДС eq 'БезНДС'"})
    assert [(r["Ref_Key"], r["LineNumber"], r["Содержание"]) for r in row_set] == [
        (created["Ref_Key"], "2", "Запись, январь")]
    posted = api("POST", f"{SALES}(guid'{created['Ref_Key']}')/Post", params={"PostingModeOperational": "false"})
    assert posted.status_code == 200 and posted.json()["Posted"] is True
    # A PATCH carrying the tabular part replaces it whole.
    path = f"{SALES}(guid'{created['Ref_Key']}')"
    assert api("PATCH", path, json={"Услуги": rows[1:]}).status_code == 200
    assert [r["СтавкаНДС"] for r in api.get(SALES, created["Ref_Key"])["Услуги"]] == ["БезНДС"]


def test_a_payment_with_its_breakdown_posts_and_an_advance_invoice_rests_on_it(api):
    buyer = counterparty(api)["Ref_Key"]
    deal = contract(api, buyer)["Ref_Key"]
    receipt = api.create(RECEIPTS, ВидОперации="ОплатаПокупателя", Организация_Key=organisation(api),
                         Контрагент_Key=buyer, ВалютаДокумента_Key=seeded(api, CURRENCIES, "643"),
                         СуммаДокумента="1220.00", НазначениеПлатежа="Оплата по счету 17, в т.ч. НДС 22%",
                         РасшифровкаПлатежа=[{"ДоговорКонтрагента_Key": deal, "СуммаПлатежа": "1220.00",
                                              "СтавкаНДС": "НДС22_122", "СуммаНДС": "220.00",
                                              "СпособПогашенияЗадолженности": "Автоматически",
                                              "СчетУчетаРасчетовПоАвансам_Key": seeded(api, ACCOUNTS, "62.02")}])
    [row] = exact(api, f"{RECEIPTS}(guid'{receipt['Ref_Key']}')")["РасшифровкаПлатежа"]
    assert (row["ДоговорКонтрагента_Key"], row["СтавкаНДС"], str(row["СуммаПлатежа"])) == (deal, "НДС22_122",
                                                                                         "1220.00")
    assert api("POST", f"{RECEIPTS}(guid'{receipt['Ref_Key']}')/Post").status_code == 200
    advance = api.create(VAT_INVOICES, ВидСчетаФактуры="НаАванс", КодВидаОперации="02",
                         Организация_Key=organisation(api), Контрагент_Key=buyer, ДоговорКонтрагента_Key=deal,
                         ДокументОснование=receipt["Ref_Key"].upper(),
                         ДокументОснование_Type=f"StandardODATA.{RECEIPTS}",
                         СуммаДокумента="1220.00", СуммаНДСДокумента="220.00")
    assert advance["ДокументОснование"] == receipt["Ref_Key"]  # a guid, kept canonical
    assert api("POST", f"{VAT_INVOICES}(guid'{advance['Ref_Key']}')/Post").status_code == 200
    shown = api.rows(VAT_INVOICES, **{"$select": "Number,ДокументОснование_Presentation"})[0]
    assert shown["ДокументОснование_Presentation"].startswith(f"ПоступлениеНаРасчетныйСчет {receipt['Number']} от ")


def test_a_composite_basis_needs_its_type_and_an_empty_one_is_undefined(api):
    document = sale(api, counterparty(api)["Ref_Key"])
    empty = api.create(VAT_INVOICES)
    assert (empty["ДокументОснование"], empty["ДокументОснование_Type"]) == ("", "StandardODATA.Undefined")
    untyped = api("POST", VAT_INVOICES, json={"ДокументОснование": document["Ref_Key"]})
    assert untyped.status_code == 400 and "ДокументОснование_Type" in untyped.text
    wrong = api("POST", VAT_INVOICES, json={"ДокументОснование": document["Ref_Key"],
                                            "ДокументОснование_Type": f"StandardODATA.{COUNTERPARTIES}"})
    assert wrong.status_code == 400 and "ДокументОснование_Type" in wrong.text
    path = f"{VAT_INVOICES}(guid'{empty['Ref_Key']}')"
    typed = api("PATCH", path, json={"ДокументОснование": document["Ref_Key"],
                                     "ДокументОснование_Type": f"StandardODATA.{SALES}"}).json()
    assert typed["ДокументОснование_Type"] == f"StandardODATA.{SALES}"
    cleared = api("PATCH", path, json={"ДокументОснование": ""}).json()
    assert cleared["ДокументОснование_Type"] == "StandardODATA.Undefined"  # an empty value has no type
    unposted = api("POST", path + "/Post")
    assert refused(unposted, 'Поле "ДокументОснование" не заполнено')


# references
def test_references_resolve_by_navigation_expand_and_filter_paths(api):
    buyer = counterparty(api, "ООО Альфа")["Ref_Key"]
    deal = contract(api, buyer, "Договор 5", Номер="5", Дата="2026-01-01T00:00:00")
    item = service_item(api)
    document = sale(api, buyer, ДоговорКонтрагента_Key=deal["Ref_Key"],
                    Услуги=[{"Номенклатура_Key": item["Ref_Key"], "Сумма": 1, "СтавкаНДС": "НДС22"}])
    base = f"{SALES}(guid'{document['Ref_Key']}')"
    currency = api("GET", f"{base}/ВалютаДокумента").json()
    assert (currency["Code"], currency["Description"], currency["НаименованиеПолное"]) == (
        "643", "руб.", "Российский рубль")
    own = api("GET", f"{base}/Организация").json()
    assert own["ИНН"] == "7701452833" and own["Ref_Key"] == organisation(api)
    assert api("GET", f"{CONTRACTS}(guid'{deal['Ref_Key']}')/ВалютаВзаиморасчетов").json()["Code"] == "643"
    assert api("GET", f"{CONTRACTS}(guid'{deal['Ref_Key']}')/Owner").json()["Ref_Key"] == buyer
    unit = api("GET", f"{PRODUCTS}(guid'{item['Ref_Key']}')/ЕдиницаИзмерения").json()
    assert (unit["Code"], unit["Description"]) == ("876", "усл. ед")
    country = api("GET", f"{ORGANISATIONS}(guid'{own['Ref_Key']}')/СтранаРегистрации").json()
    assert country["КодАльфа2"] == "RU"
    expanded = api.rows(SALES, **{"$expand": "ВалютаДокумента,ДоговорКонтрагента,Организация"})[0]
    assert expanded["ВалютаДокумента"]["Code"] == "643" and expanded["ДоговорКонтрагента"]["Номер"] == "5"
    assert expanded["ДоговорКонтрагента"]["ВидДоговора"] == "СПокупателем"
    by_path = api.rows(SALES, **{"$filter": "ВалютаДокумента/Code eq '643' and "
                                            "ДоговорКонтрагента/ВидДоговора eq 'СПокупателем'"})
    assert [d["Ref_Key"] for d in by_path] == [document["Ref_Key"]]
    assert api.rows(SALES, **{"$filter": "ВалютаДокумента/Code eq '949'"}) == []
    shown = api.rows(SALES, **{"$select": "ВалютаДокумента_Presentation,СчетУчетаРасчетовСКонтрагентом_Presentation"})
    assert shown[0]["ВалютаДокумента_Presentation"] == "руб."


# the base's own catalogs
def test_reference_catalogs_are_seeded_once_across_restarts(tmp_path):
    keys = []
    for _ in range(2):
        with serving(start(tmp_path)) as server:
            api = Api(server)
            found = {name: {r["Code"]: r["Ref_Key"] for r in api.rows(name)} for name in SEEDED}
            counts = {name: int(api("GET", f"{name}/$count").text) for name in SEEDED}
            accounts = {r["Code"]: r for r in api.rows(ACCOUNTS)}
            changes = requests.get(server.url + "/_sandbox/onec/changes", timeout=5).json()["value"]
            api.session.close()
        assert {name: set(codes) for name, codes in found.items()} == SEEDED
        assert counts == {name: len(codes) for name, codes in SEEDED.items()}  # none twice
        assert accounts["62.01"]["Predefined"] is True
        assert accounts["62.01"]["PredefinedDataName"] == "РасчетыСПокупателями"
        assert changes == []  # the base's own items are no change anyone made
        keys.append(found)
    assert keys[0] == keys[1]  # the same objects, not new ones


def test_a_unique_currency_code_is_refused_twice(api):
    response = api("POST", CURRENCIES, json={"Code": "643", "Description": "RUB"})
    assert refused(response, "Код", "не уникально")


# values 1C refuses
@pytest.mark.parametrize("entity_set, body, enumeration", [
    (SALES, {"Услуги": [{"Содержание": "x", "СтавкаНДС": "НДС21"}]}, "СтавкиНДС"),
    (SALES, {"Услуги": [{"Содержание": "x", "СтавкаНДС": "20%"}]}, "СтавкиНДС"),
    (SALES, {"ВидОперации": "Продажа"}, "ВидыОперацийРеализацияТоваров"),
    (CONTRACTS, {"Description": "x", "ВидДоговора": "ПоДоговору"}, "ВидыДоговоровКонтрагентов"),
    (RECEIPTS, {"РасшифровкаПлатежа": [{"СтавкаНДС": "НДС20/120"}]}, "СтавкиНДС"),
    (PRODUCTS, {"Description": "x", "ВидСтавкиНДС": "Обычная"}, "ВидыСтавокНДС"),
])
def test_a_value_outside_its_enumeration_is_a_business_error(api, entity_set, body, enumeration):
    response = api("POST", entity_set, json=body)
    assert refused(response, enumeration), response.text
    assert api.rows(entity_set) == []


def test_a_vat_rate_outside_the_enumeration_is_refused_on_patch_too(api):
    document = api.create(SALES, Услуги=[{"Содержание": "x", "СтавкаНДС": "НДС20"}])
    path = f"{SALES}(guid'{document['Ref_Key']}')"
    assert refused(api("PATCH", path, json={"Услуги": [{"Содержание": "x", "СтавкаНДС": "НДС 20%"}]}),
                   "СтавкиНДС", "НДС22")
    assert api.get(SALES, document["Ref_Key"])["Услуги"][0]["СтавкаНДС"] == "НДС20"
    for rate in ("НДС22", "НДС5", "НДС7_107", "НДС0", ""):  # 2026 rates and the empty value are values
        assert api("PATCH", path, json={"Услуги": [{"СтавкаНДС": rate}]}).status_code == 200


# a sandbox kept from before
def test_an_infobase_from_the_older_configuration_opens_with_the_new_attributes_empty(tmp_path):
    """Contracts, items and documents written when currency, kind, unit and VAT rate were strings: 1C shows the
    new attributes empty after the configuration update, and the old strings are no longer published."""
    from sandbox.onec.store import Store

    deal, item, document, invoice = (str(uuid.uuid4()) for _ in range(4))
    store = Store(tmp_path / "onec.sqlite")
    store.insert(CONTRACTS, {"Ref_Key": deal, "DataVersion": "AAAAAAAAAAE=", "DeletionMark": False, "Code": "000000001",
                             "Description": "Договор 1", "Owner_Key": str(uuid.uuid4()), "Номер": "1",
                             "Дата": "2026-01-01T00:00:00", "ВалютаВзаиморасчетов": "RUB", "ВидДоговора": "Продажа",
                             "Комментарий": ""})
    store.insert(PRODUCTS, {"Ref_Key": item, "DataVersion": "AAAAAAAAAAI=", "DeletionMark": False, "Code": "000000001",
                            "Description": "Связь", "ЕдиницаИзмерения": "мин", "СтавкаНДС": "НДС20", "Услуга": True})
    store.insert(SALES, {"Ref_Key": document, "DataVersion": "AAAAAAAAAAM=", "DeletionMark": False,
                         "Number": "0000-000001", "Date": "2026-01-31T00:00:00", "Posted": False,
                         "ВалютаДокумента": "RUB", "СуммаДокумента": "1200.00",
                         "Услуги": [{"LineNumber": "1", "Номенклатура_Key": item, "Сумма": "1200.00",
                                     "СтавкаНДС": "НДС20"}]})
    store.insert(VAT_INVOICES, {"Ref_Key": invoice, "DataVersion": "AAAAAAAAAAQ=", "DeletionMark": False,
                                "Number": "0000-000001", "Date": "2026-01-31T00:00:00", "Posted": False,
                                "ДокументОснование_Key": document, "СуммаНДС": "200.00"})
    store.close()
    with serving(start(tmp_path)) as server:
        api = Api(server)
        old_deal = api.get(CONTRACTS, deal)
        assert (old_deal["ВалютаВзаиморасчетов_Key"], old_deal["Организация_Key"]) == (
            "00000000-0000-0000-0000-000000000000",) * 2
        assert "ВалютаВзаиморасчетов" not in old_deal and old_deal["Номер"] == "1"
        old_item = api.get(PRODUCTS, item)
        assert old_item["ЕдиницаИзмерения_Key"] == "00000000-0000-0000-0000-000000000000"
        assert old_item["ВидСтавкиНДС"] == "" and "СтавкаНДС" not in old_item
        old_sale = api.get(SALES, document)
        assert old_sale["Услуги"][0]["СтавкаНДС"] == "НДС20" and "ВалютаДокумента" not in old_sale
        old_invoice = api.get(VAT_INVOICES, invoice)
        assert (old_invoice["ДокументОснование"], old_invoice["ДокументОснование_Type"]) == (
            "", "StandardODATA.Undefined")
        # The old contract is fixed by filling its new attributes.
        fixed = api("PATCH", f"{CONTRACTS}(guid'{deal}')", json={
            "ВалютаВзаиморасчетов_Key": seeded(api, CURRENCIES, "643"), "ВидДоговора": "СПокупателем"})
        assert fixed.status_code == 200
        api.session.close()
