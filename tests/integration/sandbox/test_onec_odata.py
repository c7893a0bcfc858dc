"""The 1C stand-in's standard OData interface over real HTTP: every protocol rule of DESIGN §8."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import defusedxml.ElementTree as SafeET
import pytest
import requests

from sandbox.httpbase import set_faults
from tests.support.onec_standin import Api, api, onec, start  # noqa: F401 - fixtures

COUNTERPARTIES = "Catalog_Контрагенты"
COUNTRIES = "Catalog_СтраныМира"
ORGANISATIONS = "Catalog_Организации"
CURRENCIES = "Catalog_Валюты"
UNITS = "Catalog_КлассификаторЕдиницИзмерения"
CONTRACTS = "Catalog_ДоговорыКонтрагентов"
PRODUCTS = "Catalog_Номенклатура"
SALES = "Document_РеализацияТоваровУслуг"
VAT_INVOICES = "Document_СчетФактураВыданный"
RECEIPTS = "Document_ПоступлениеНаРасчетныйСчет"






def error_code(response: requests.Response) -> str:
    return response.json()["odata.error"]["code"]


def country(api: Api, code: str) -> str:
    """The Ref_Key of a seeded country (Catalog_СтраныМира) by its ОКСМ code."""
    [row] = api.rows(COUNTRIES, **{"$filter": f"Code eq '{code}'"})
    return row["Ref_Key"]


def counterparty(api: Api, name: str = "ООО Ромашка", **fields) -> dict:
    defaults = {"ИНН": "7701234567", "ЮридическоеФизическоеЛицо": "ЮридическоеЛицо",
                "СтранаРегистрации_Key": country(api, "643")}
    return api.create(COUNTERPARTIES, Description=name, **{**defaults, **fields})


def seeded(api: Api, entity_set: str, code: str, field: str = "Code") -> str:
    """The Ref_Key of an item the base holds from the start (currency, unit, organisation) by its code."""
    [row] = api.rows(entity_set, **{"$filter": f"{field} eq '{code}'"})
    return row["Ref_Key"]


def organisation(api: Api) -> str:
    """The base's own organisation (the seeded one)."""
    [row] = api.rows(ORGANISATIONS)
    return row["Ref_Key"]


def contract(api: Api, owner: str, name: str = "Основной договор", kind: str = "СПокупателем", **fields) -> dict:
    """A contract of the counterparty ``owner`` with the base's organisation, in rubles."""
    defaults = {"Организация_Key": organisation(api), "ВидДоговора": kind,
                "ВалютаВзаиморасчетов_Key": seeded(api, CURRENCIES, "643")}
    return api.create(CONTRACTS, Description=name, Owner_Key=owner, **{**defaults, **fields})


def sale(api: Api, buyer: str, **fields) -> dict:
    """A sale the configuration lets post: organisation, counterparty and a contract of the buyer."""
    defaults = {"ВидОперации": "Услуги", "Организация_Key": organisation(api), "Контрагент_Key": buyer,
                "ВалютаДокумента_Key": seeded(api, CURRENCIES, "643")}
    if "ДоговорКонтрагента_Key" not in fields:
        defaults["ДоговорКонтрагента_Key"] = contract(api, buyer)["Ref_Key"]
    return api.create(SALES, **{**defaults, **fields})


# service, metadata, auth, format
def test_metadata_is_csdl_generated_from_the_schema_table(api):
    response = api("GET", "$metadata")
    assert response.status_code == 200 and "xml" in response.headers["Content-Type"]
    root = SafeET.fromstring(response.content)
    edm = "{http://schemas.microsoft.com/ado/2009/11/edm}"
    sets = {e.get("Name") for e in root.iter(f"{edm}EntitySet")}
    assert {COUNTERPARTIES, CONTRACTS, PRODUCTS, SALES, VAT_INVOICES, RECEIPTS, "ExchangePlan_Ledgerlink",
            f"{SALES}_Услуги"} <= sets
    types = {t.get("Name"): {p.get("Name"): p.get("Type") for p in t.iter(f"{edm}Property")}
             for t in root.iter(f"{edm}EntityType")}
    assert types[SALES]["СуммаДокумента"] == "Edm.Double"  # fractional numbers, as real metadata types them
    assert types[SALES]["Услуги"] == f"Collection(StandardODATA.{SALES}_Услуги_RowType)"
    assert types[f"{SALES}_Услуги"]["LineNumber"] == "Edm.Int64"
    assert types[CONTRACTS]["Owner_Key"] == "Edm.Guid"
    navigation = {n.get("Name") for t in root.iter(f"{edm}EntityType") if t.get("Name") == SALES
                  for n in t.iter(f"{edm}NavigationProperty")}
    assert navigation == {"Организация", "Контрагент", "ДоговорКонтрагента", "ВалютаДокумента",
                          "СчетУчетаРасчетовСКонтрагентом", "СчетУчетаРасчетовПоАвансам"}


def test_missing_or_wrong_credentials_get_401_with_basic_challenge(onec):
    url = onec.url + f"/demo/odata/standard.odata/{COUNTERPARTIES}?$format=json"
    missing = requests.get(url, timeout=5)
    wrong = requests.get(url, auth=("ledgerlink", "nope"), timeout=5)
    unknown_user = requests.get(url, auth=("someone", "secret"), timeout=5)
    assert missing.status_code == wrong.status_code == unknown_user.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="1C"'
    assert requests.get(url, auth=("ledgerlink", "secret"), timeout=5).status_code == 200


def test_json_only_when_asked_for_atom_otherwise(onec):
    url = onec.url + f"/demo/odata/standard.odata/{COUNTERPARTIES}"
    auth = ("ledgerlink", "secret")
    default = requests.get(url, auth=auth, timeout=5)
    assert default.status_code == 200 and default.headers["Content-Type"].startswith("application/atom+xml")
    assert SafeET.fromstring(default.content).tag == "{http://www.w3.org/2005/Atom}feed"
    by_format = requests.get(url, params={"$format": "json"}, auth=auth, timeout=5)
    by_header = requests.get(url, headers={"Accept": "application/json"}, auth=auth, timeout=5)
    assert by_format.status_code == by_header.status_code == 200
    assert by_format.json()["odata.metadata"].endswith(f"/demo/odata/standard.odata/$metadata#{COUNTERPARTIES}")
    assert by_format.json()["value"] == []


def test_paths_outside_the_publication_are_404(api, onec):
    assert requests.get(onec.url + "/other/odata/standard.odata/$metadata", timeout=5).status_code == 404
    response = api("GET", "Catalog_Нет")
    assert response.status_code == 404 and error_code(response) == "6"


# create, read, change, delete
def test_post_creates_with_the_client_key_ignoring_unknown_and_posted(api):
    ref = str(uuid.uuid4())
    response = api("POST", COUNTERPARTIES, json={"Ref_Key": ref, "Description": "ООО Ромашка", "ИНН": "7701234567",
                                                "НесуществующееСвойство": 1})
    assert response.status_code == 201
    assert response.headers["Location"].endswith(f"(guid'{ref}')")
    created = response.json()
    assert created["Ref_Key"] == ref and created["Description"] == "ООО Ромашка"
    assert "НесуществующееСвойство" not in created
    assert created["Code"] and created["DataVersion"] and created["DeletionMark"] is False
    assert requests.utils.unquote(response.headers["Location"]).startswith(api.root + COUNTERPARTIES)
    assert api.get(COUNTERPARTIES, ref)["ИНН"] == "7701234567"

    document = api.create(SALES, Контрагент_Key=ref, Posted=True, Date="2026-01-31T00:00:00")
    assert document["Posted"] is False  # Posted changes only through the Post action
    assert document["Date"] == "2026-01-31T00:00:00" and document["Number"]


def test_post_generates_a_key_when_none_is_sent(api):
    created = counterparty(api)
    assert uuid.UUID(created["Ref_Key"]).version == 4


def test_existing_key_is_error_15(api):
    created = counterparty(api)
    response = api("POST", COUNTERPARTIES, json={"Ref_Key": created["Ref_Key"], "Description": "again"})
    assert 400 <= response.status_code < 500 and error_code(response) == "15"
    assert api.get(COUNTERPARTIES, created["Ref_Key"])["Description"] == "ООО Ромашка"


def test_unknown_key_is_404_code_9(api):
    missing = f"{COUNTERPARTIES}(guid'{uuid.uuid4()}')"
    for response in (api("GET", missing), api("PATCH", missing, json={"Description": "x"}), api("DELETE", missing)):
        assert response.status_code == 404 and error_code(response) == "9"
    body = response.json()["odata.error"]
    assert body["message"]["lang"] == "ru" and body["message"]["value"]


def test_patch_changes_only_the_fields_sent_and_bumps_data_version(api):
    created = counterparty(api, Комментарий="first")
    response = api("PATCH", f"{COUNTERPARTIES}(guid'{created['Ref_Key']}')", json={"КПП": "770101001"})
    assert response.status_code == 200
    changed = api.get(COUNTERPARTIES, created["Ref_Key"])
    assert changed["КПП"] == "770101001"
    assert changed["Комментарий"] == "first" and changed["Description"] == created["Description"]
    assert changed["DataVersion"] != created["DataVersion"]


def test_patch_carrying_a_tabular_part_replaces_it_whole(api):
    document = api.create(SALES, Услуги=[
        {"Содержание": "one", "Сумма": 1}, {"Содержание": "two", "Сумма": 2}, {"Содержание": "three", "Сумма": 3},
    ], Комментарий="keep")
    assert [r["LineNumber"] for r in document["Услуги"]] == ["1", "2", "3"]
    path = f"{SALES}(guid'{document['Ref_Key']}')"
    api("PATCH", path, json={"Услуги": [{"LineNumber": "7", "Содержание": "only", "Сумма": 10}]})
    rows = api.get(SALES, document["Ref_Key"])["Услуги"]
    assert [(r["LineNumber"], r["Содержание"]) for r in rows] == [("1", "only")]
    assert rows[0]["Ref_Key"] == document["Ref_Key"]
    api("PATCH", path, json={"Комментарий": "changed"})  # no tabular part sent: rows untouched
    after = api.get(SALES, document["Ref_Key"])
    assert len(after["Услуги"]) == 1 and after["Комментарий"] == "changed"


def test_delete_removes_outright(api):
    created = counterparty(api)
    path = f"{COUNTERPARTIES}(guid'{created['Ref_Key']}')"
    assert api("DELETE", path).status_code == 204
    assert api("GET", path).status_code == 404
    assert api.rows(COUNTERPARTIES) == []


def test_if_match_with_a_stale_data_version_is_412(api):
    created = counterparty(api)
    path = f"{COUNTERPARTIES}(guid'{created['Ref_Key']}')"
    fresh = api("PATCH", path, json={"Комментарий": "1"}, headers={"If-Match": created["DataVersion"]})
    assert fresh.status_code == 200
    stale = api("PATCH", path, json={"Комментарий": "2"}, headers={"If-Match": created["DataVersion"]})
    assert stale.status_code == 412 and "odata.error" in stale.json()
    assert api.get(COUNTERPARTIES, created["Ref_Key"])["Комментарий"] == "1"
    assert api("DELETE", path, headers={"If-Match": created["DataVersion"]}).status_code == 412
    assert api("DELETE", path, headers={"If-Match": fresh.json()["DataVersion"]}).status_code == 204


def test_data_version_changes_on_every_write(api, onec):
    versions = []
    document = sale(api, counterparty(api)["Ref_Key"])
    versions.append(document["DataVersion"])
    path = f"{SALES}(guid'{document['Ref_Key']}')"
    versions.append(api("PATCH", path, json={"Комментарий": "x"}).json()["DataVersion"])
    versions.append(api("POST", path + "/Post").json()["DataVersion"])
    versions.append(api("POST", path + "/Unpost").json()["DataVersion"])
    edit = requests.post(onec.url + "/_sandbox/onec/edit", timeout=5, json={
        "set": SALES, "ref_key": document["Ref_Key"], "changes": {"Комментарий": "edited in 1C"}})
    versions.append(edit.json()["DataVersion"])
    assert len(set(versions)) == len(versions)
    assert all(isinstance(v, str) and v for v in versions)


# types on the wire
def test_decimals_travel_as_exact_numbers_and_int64_as_strings(api):
    body = ('{"СуммаДокумента": 1200.50, "Услуги": [{"Количество": 3, "Цена": 0.10, '
            '"Сумма": 12345678901234.57, "СуммаНДС": "0.30"}], "Date": "2026-01-31T00:00:00"}')
    response = api("POST", SALES, data=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201
    for text in (response.text, api("GET", f"{SALES}(guid'{response.json()['Ref_Key']}')").text):
        assert '"СуммаДокумента":1200.50' in text
        assert '"Цена":0.10' in text and '"Сумма":12345678901234.57' in text and '"СуммаНДС":0.30' in text
        assert '"LineNumber":"1"' in text
        assert '"Date":"2026-01-31T00:00:00"' in text
    assert api.rows(SALES, **{"$filter": "СуммаДокумента eq 1200.5"})[0]["Ref_Key"] == response.json()["Ref_Key"]


@pytest.mark.parametrize("body, problem", [
    ({"СуммаДокумента": "много"}, "СуммаДокумента"),
    ({"Date": "2026-01-31T00:00:00Z"}, "Date"),
    ({"Контрагент_Key": "not-a-guid"}, "Контрагент_Key"),
    ({"DeletionMark": "yes"}, "DeletionMark"),
])
def test_values_of_the_wrong_type_are_refused(api, body, problem):
    response = api("POST", SALES, json=body)
    assert response.status_code == 400 and problem in response.json()["odata.error"]["message"]["value"]
    assert api.rows(SALES) == []


# query options
@pytest.fixture
def dataset(api):
    """Three counterparties and three sales documents with known values."""
    alpha = counterparty(api, "Альфа")
    obrien = counterparty(api, "O'Brien Ltd", СтранаРегистрации_Key=country(api, "792"), ИНН="",
                          НалоговыйНомер="1234567890")
    gamma = counterparty(api, "Гамма")
    api("PATCH", f"{COUNTERPARTIES}(guid'{obrien['Ref_Key']}')", json={"DeletionMark": True})
    docs = [
        sale(api, alpha["Ref_Key"], Number="D-1", Date="2026-01-15T00:00:00", СуммаДокумента=100),
        api.create(SALES, Number="D-2", Date="2026-01-31T00:00:00", Контрагент_Key=alpha["Ref_Key"],
                   СуммаДокумента="1200.50"),  # no contract: not postable
        sale(api, gamma["Ref_Key"], Number="D-3", Date="2026-02-10T12:30:00", СуммаДокумента=5000),
    ]
    assert api("POST", f"{SALES}(guid'{docs[2]['Ref_Key']}')/Post").status_code == 200
    return {"alpha": alpha, "obrien": obrien, "gamma": gamma, "docs": docs}


@pytest.mark.parametrize("expression, expected", [
    ("СуммаДокумента eq 1200.50", {"D-2"}),
    ("СуммаДокумента ne 1200.5", {"D-1", "D-3"}),
    ("СуммаДокумента gt 100", {"D-2", "D-3"}),
    ("СуммаДокумента ge 1200.50M", {"D-2", "D-3"}),
    ("СуммаДокумента lt 1200.50", {"D-1"}),
    ("СуммаДокумента le 1200.5", {"D-1", "D-2"}),
    ("Date ge datetime'2026-01-31T00:00:00'", {"D-2", "D-3"}),
    ("Date lt datetime'2026-01-31T00:00'", {"D-1"}),
    ("Posted eq true", {"D-3"}),
    ("Posted", {"D-3"}),
    ("not Posted", {"D-1", "D-2"}),
    ("not (Posted eq true)", {"D-1", "D-2"}),
    ("Number eq 'D-1' or Number eq 'D-3'", {"D-1", "D-3"}),
    ("(Number eq 'D-1' or Number eq 'D-3') and СуммаДокумента gt 1000", {"D-3"}),
    ("Number eq 'D-1' or (Number eq 'D-3' and СуммаДокумента gt 10000)", {"D-1"}),
    ("Комментарий eq ''", {"D-1", "D-2", "D-3"}),
])
def test_filter_on_documents(api, dataset, expression, expected):
    assert {d["Number"] for d in api.rows(SALES, **{"$filter": expression})} == expected


def test_filter_on_guids(api, dataset):
    alpha = dataset["alpha"]["Ref_Key"]
    by_guid = api.rows(SALES, **{"$filter": f"Контрагент_Key eq guid'{alpha}'"})
    assert {d["Number"] for d in by_guid} == {"D-1", "D-2"}
    not_alpha = api.rows(SALES, **{"$filter": f"Контрагент_Key ne guid'{alpha.upper()}'"})
    assert {d["Number"] for d in not_alpha} == {"D-3"}


@pytest.mark.parametrize("expression, expected", [
    ("Description eq 'O''Brien Ltd'", {"O'Brien Ltd"}),
    ("Description eq 'альфа'", {"Альфа"}),  # 1C compares strings without regard to case
    ("DeletionMark eq false", {"Альфа", "Гамма"}),
    ("DeletionMark eq true and НалоговыйНомер ne ''", {"O'Brien Ltd"}),
    ("Description lt 'Б'", {"O'Brien Ltd", "Альфа"}),
    ("Description ge 'Б'", {"Гамма"}),
])
def test_filter_on_strings_and_booleans(api, dataset, expression, expected):
    assert {c["Description"] for c in api.rows(COUNTERPARTIES, **{"$filter": expression})} == expected


@pytest.mark.parametrize("expression", [
    "tolower(Description) eq 'альфа'",
    "length(Description) gt 3",
    "indexof(Description, 'ль') eq 1",
    "toupper(Description) eq 'А'",
    "substring(Description, 1) eq 'А'",
    "startswith(Description)",  # a supported function with the wrong number of arguments
    "substringof(1, Description)",  # ... or an argument of the wrong type
    "Description eq",  # malformed
    "Description eq 'unclosed",
    "Нет eq 1",  # unknown property
    "ИНН eq 7701234567",  # a string compared with a number
    f"Ref_Key eq '{uuid.UUID(int=1)}'",  # a guid compared with a string, not guid'...'
    "DeletionMark gt false",
    "Code add 1 eq 2",
])
def test_unsupported_or_malformed_filters_are_code_21(api, dataset, expression):
    response = api("GET", COUNTERPARTIES, params={"$filter": expression})
    assert response.status_code == 400 and error_code(response) == "21", response.text


def test_select_top_skip_orderby_and_counts(api, dataset):
    ordered = api.rows(SALES, **{"$orderby": "СуммаДокумента desc"})
    assert [d["Number"] for d in ordered] == ["D-3", "D-2", "D-1"]
    # $skip is applied before $top, whatever their order in the URL.
    page = api("GET", f"{SALES}?$top=1&$skip=1&$orderby=Number&$select=Number,СуммаДокумента")
    assert page.json()["value"] == [{"Number": "D-2", "СуммаДокумента": 1200.5}]
    assert '"СуммаДокумента":1200.50' in page.text
    # $inlinecount=allpages makes the base ignore $top and $skip (guide §17.4.6.2): every row, and the count.
    counted_page = api("GET", f"{SALES}?$top=1&$skip=1&$orderby=Number&$select=Number&$inlinecount=allpages")
    body = counted_page.json()
    assert body["odata.count"] == "3"  # a string
    assert [d["Number"] for d in body["value"]] == ["D-1", "D-2", "D-3"]
    two_keys = api.rows(COUNTERPARTIES, **{"$orderby": "НалоговыйНомер desc, Description asc",
                                           "$select": "Description"})
    assert [c["Description"] for c in two_keys] == ["O'Brien Ltd", "Альфа", "Гамма"]
    counted = api("GET", f"{SALES}/$count", params={"$filter": "СуммаДокумента gt 100"})
    assert counted.status_code == 200 and counted.text == "2"
    assert api("GET", f"{SALES}/$count").text == "3"
    filtered = api("GET", SALES, params={"$filter": "Posted eq false", "$inlinecount": "allpages", "$top": "1"})
    assert filtered.json()["odata.count"] == "2" and len(filtered.json()["value"]) == 2
    assert error_code(api("GET", SALES, params={"$top": "-1"})) == "5"
    assert error_code(api("GET", SALES, params={"$select": "Нет"})) == "6"
    assert error_code(api("GET", SALES, params={"$orderby": "Number sideways"})) == "6"


def test_expand_embeds_the_referenced_objects(api, dataset):
    contract = api.create(CONTRACTS, Description="Договор 1", Owner_Key=dataset["alpha"]["Ref_Key"],
                          ВалютаВзаиморасчетов_Key=seeded(api, CURRENCIES, "643"))
    doc = dataset["docs"][0]
    api("PATCH", f"{SALES}(guid'{doc['Ref_Key']}')", json={"ДоговорКонтрагента_Key": contract["Ref_Key"]})
    rows = api.rows(SALES, **{"$filter": "Number eq 'D-1'", "$expand": "Контрагент,ДоговорКонтрагента"})
    assert rows[0]["Контрагент"]["Description"] == "Альфа"
    assert rows[0]["ДоговорКонтрагента"]["Owner_Key"] == dataset["alpha"]["Ref_Key"]
    assert rows[0]["Контрагент@navigationLinkUrl"] == f"{SALES}(guid'{doc['Ref_Key']}')/Контрагент"
    unset = api.rows(SALES, **{"$filter": "Number eq 'D-2'", "$expand": "ДоговорКонтрагента"})
    assert unset[0]["ДоговорКонтрагента"] is None
    single = api("GET", f"{CONTRACTS}(guid'{contract['Ref_Key']}')", params={"$expand": "Owner"}).json()
    assert single["Owner"]["Ref_Key"] == dataset["alpha"]["Ref_Key"]
    navigated = api("GET", f"{SALES}(guid'{doc['Ref_Key']}')/Контрагент").json()
    assert navigated["Description"] == "Альфа"
    assert error_code(api("GET", SALES, params={"$expand": "Нет"})) == "6"


# documents
def test_post_and_unpost_actions(api, dataset):
    doc = dataset["docs"][0]
    path = f"{SALES}(guid'{doc['Ref_Key']}')"
    posted = api("POST", path + "/Post", params={"PostingModeOperational": "false"})
    assert posted.status_code == 200 and posted.json()["Posted"] is True
    assert api.get(SALES, doc["Ref_Key"])["Posted"] is True
    api("PATCH", path, json={"Posted": False})  # ignored: not writable directly
    assert api.get(SALES, doc["Ref_Key"])["Posted"] is True
    assert api("POST", path + "/Unpost").json()["Posted"] is False
    api("POST", path + "/Post")
    api("PATCH", path, json={"DeletionMark": True})  # marking for deletion unposts, as in 1C
    assert api.get(SALES, doc["Ref_Key"])["Posted"] is False
    assert api("GET", path + "/Post").status_code == 405


def test_posting_failures_are_500_code_minus_1(api, dataset):
    alpha, gamma = dataset["alpha"]["Ref_Key"], dataset["gamma"]["Ref_Key"]
    ghost_key = str(uuid.uuid4())
    cases = {
        # The counterparty does not exist.
        "Контрагент: объект не найден": sale(api, ghost_key, ДоговорКонтрагента_Key=contract(api, alpha)["Ref_Key"]),
        # The counterparty is marked for deletion.
        "Контрагент помечен на удаление": sale(api, dataset["obrien"]["Ref_Key"]),
        # The configuration's filling check: no organisation, no counterparty, no contract.
        'Поле "Организация" не заполнено': api.create(SALES, Контрагент_Key=alpha),
        'Поле "ДоговорКонтрагента" не заполнено': api.create(SALES, Организация_Key=organisation(api),
                                                             Контрагент_Key=alpha),
        # A row without its item.
        'Услуги, строка 1: поле "Номенклатура" не заполнено': sale(api, alpha, Услуги=[{"Содержание": "x"}]),
        # The contract belongs to another counterparty.
        "не принадлежит контрагенту": sale(api, alpha, ДоговорКонтрагента_Key=contract(api, gamma)["Ref_Key"]),
        # A purchase contract under a sale.
        "вид договора": sale(api, alpha, ДоговорКонтрагента_Key=contract(api, alpha, kind="СПоставщиком")["Ref_Key"]),
    }
    receipt = api.create(RECEIPTS, СуммаДокумента=10, Организация_Key=organisation(api), РасшифровкаПлатежа=[
        {"СуммаПлатежа": 10}])
    invoice = api.create(VAT_INVOICES, Организация_Key=organisation(api), Контрагент_Key=alpha,
                         ДокументОснование=str(uuid.uuid4()), ДокументОснование_Type=f"StandardODATA.{SALES}")
    failures = [(SALES, doc, why) for why, doc in cases.items()] + [
        (RECEIPTS, receipt, 'Поле "Контрагент" не заполнено'),
        (RECEIPTS, receipt, 'РасшифровкаПлатежа, строка 1: поле "ДоговорКонтрагента" не заполнено'),
        (VAT_INVOICES, invoice, "ДокументОснование: объект не найден")]
    for entity_set, doc, why in failures:
        response = api("POST", f"{entity_set}(guid'{doc['Ref_Key']}')/Post")
        assert response.status_code == 500 and error_code(response) == "-1", (entity_set, response.text)
        assert why in response.json()["odata.error"]["message"]["value"], (why, response.text)
        assert api.get(entity_set, doc["Ref_Key"])["Posted"] is False
    good = api.create(VAT_INVOICES, Организация_Key=organisation(api), Контрагент_Key=alpha,
                      ДокументОснование=dataset["docs"][0]["Ref_Key"], ДокументОснование_Type=f"StandardODATA.{SALES}",
                      СуммаДокумента="120.00", СуммаНДСДокумента="20.00")
    assert api("POST", f"{VAT_INVOICES}(guid'{good['Ref_Key']}')/Post").status_code == 200


def test_tabular_part_rows_are_read_only_code_13(api, dataset):
    doc = api.create(SALES, Контрагент_Key=dataset["alpha"]["Ref_Key"], Услуги=[
        {"Содержание": "a", "Сумма": "1.10"}, {"Содержание": "b", "Сумма": "2.20"}])
    created = api("POST", f"{SALES}_Услуги", json={"Ref_Key": doc["Ref_Key"], "Содержание": "c"})
    assert created.status_code == 400 and error_code(created) == "13"
    rows = api.rows(f"{SALES}_Услуги", **{"$filter": "LineNumber eq 2"})
    assert [(r["Ref_Key"], r["LineNumber"], r["Содержание"]) for r in rows] == [(doc["Ref_Key"], "2", "b")]
    assert len(api.get(SALES, doc["Ref_Key"])["Услуги"]) == 2


# persistence, admin edits, faults
def test_state_persists_across_restart(tmp_path):
    first = start(tmp_path)
    first.start_in_thread()
    api = Api(first)
    created = counterparty(api)
    first.shutdown()
    first.server_close()
    second = start(tmp_path)
    second.start_in_thread()
    try:
        again = Api(second).get(COUNTERPARTIES, created["Ref_Key"])
        assert again["DataVersion"] == created["DataVersion"] and again["Description"] == "ООО Ромашка"
        assert len(Api(second).rows("ExchangePlan_Ledgerlink")) == 1  # the BILLING node is not duplicated
    finally:
        second.shutdown()
        second.server_close()


def test_admin_edit_as_a_1c_user_then_a_stale_client_patch_is_412(api, onec):
    created = counterparty(api)
    edit = requests.post(onec.url + "/_sandbox/onec/edit", timeout=5, json={
        "set": COUNTERPARTIES, "ref_key": created["Ref_Key"], "changes": {"Description": "Ромашка (изм. в 1С)"}})
    assert edit.status_code == 200 and edit.json()["DataVersion"] != created["DataVersion"]
    stale = api("PATCH", f"{COUNTERPARTIES}(guid'{created['Ref_Key']}')", json={"Description": "billing's"},
                headers={"If-Match": created["DataVersion"]})
    assert stale.status_code == 412
    dump = requests.get(onec.url + "/_sandbox/onec/dump", params={"set": COUNTERPARTIES}, timeout=5).json()
    assert [c["Description"] for c in dump["value"]] == ["Ромашка (изм. в 1С)"]
    missing = requests.post(onec.url + "/_sandbox/onec/edit", timeout=5, json={
        "set": COUNTERPARTIES, "ref_key": str(uuid.uuid4()), "changes": {}})
    assert missing.status_code == 404


def test_dropped_response_after_apply_leaves_the_object_created(api, onec):
    set_faults(onec.url, [{"mode": "drop_after_apply", "count": 1, "methods": ["POST"], "path": "/demo/odata"}])
    ref = str(uuid.uuid4())
    with pytest.raises(requests.ConnectionError):
        api("POST", COUNTERPARTIES, json={"Ref_Key": ref, "Description": "lost answer"})
    assert api.get(COUNTERPARTIES, ref)["Description"] == "lost answer"
    retry = api("POST", COUNTERPARTIES, json={"Ref_Key": ref, "Description": "lost answer"})
    assert error_code(retry) == "15"  # a retry with the same derived key cannot duplicate it


def test_injected_errors_come_before_the_change(api, onec):
    set_faults(onec.url, [{"mode": "error", "status": 503, "count": 1, "methods": ["POST"]}])
    ref = str(uuid.uuid4())
    assert api("POST", COUNTERPARTIES, json={"Ref_Key": ref}).status_code == 503
    assert api("GET", f"{COUNTERPARTIES}(guid'{ref}')").status_code == 404


# change tracking (guide §17.4.13.3): POST, the node by its canonical URL, an Atom feed with tombstones
ATOM = "{http://www.w3.org/2005/Atom}"
D = "{http://schemas.microsoft.com/ado/2007/08/dataservices}"
TOMBSTONE = "{http://purl.org/atompub/tombstones/1.0}deleted-entry"


def node_url(api: Api) -> str:
    node = api.rows("ExchangePlan_Ledgerlink", **{"$filter": "Code eq 'BILLING'"})[0]
    return f"{api.root}ExchangePlan_Ledgerlink(guid'{node['Ref_Key']}')"


def literal(url: str) -> str:
    """An OData string literal: quoted, inner quotes doubled."""
    return "'" + url.replace("'", "''") + "'"


def select(api: Api, message_no: int, point: str | None = None) -> dict:
    """{"entries": {Ref_Key: properties}, "deleted": [Ref_Key]} of a SelectChanges answer."""
    response = api("POST", "SelectChanges", params={"DataExchangePoint": point or literal(node_url(api)),
                                                    "MessageNo": str(message_no)})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/atom+xml")
    feed = SafeET.fromstring(response.content)
    entries = {}
    for entry in feed.iter(f"{ATOM}entry"):
        properties = {el.tag.removeprefix(D): el.text for el in entry.find(f"{ATOM}content")[0]}
        entries[properties["Ref_Key"]] = properties
    deleted = [el.get("ref").rsplit("(guid'", 1)[1].rstrip("')") for el in feed.iter(TOMBSTONE)]
    assert all(el.get("when") for el in feed.iter(TOMBSTONE))
    return {"entries": entries, "order": list(entries), "deleted": deleted}


def notify(api: Api, message_no: int) -> None:
    response = api("POST", "NotifyChangesReceived", params={"DataExchangePoint": literal(node_url(api)),
                                                            "MessageNo": str(message_no)})
    assert response.status_code == 204, response.text


def test_changes_stay_registered_until_acknowledged(api, onec):
    a, b = counterparty(api, "A"), counterparty(api, "B")
    first = select(api, 1)
    assert first["order"] == [a["Ref_Key"], b["Ref_Key"]] and first["deleted"] == []
    assert first["entries"][a["Ref_Key"]]["Description"] == "A"
    assert first["entries"][a["Ref_Key"]]["DataVersion"] == a["DataVersion"]

    # A changes after message 1 was taken (by the 1C user this time), and C appears.
    requests.post(onec.url + "/_sandbox/onec/edit", timeout=5, json={
        "set": COUNTERPARTIES, "ref_key": a["Ref_Key"], "changes": {"Description": "A2"}})
    c = counterparty(api, "C")
    second = select(api, 2)
    assert {e["Description"] for e in second["entries"].values()} == {"B", "A2", "C"}  # B not acknowledged yet
    stamps = {ch["ref_key"]: ch["message_no"] for ch in requests.get(
        onec.url + "/_sandbox/onec/changes", params={"node": "BILLING"}, timeout=5).json()["value"]}
    assert stamps == {b["Ref_Key"]: "1", a["Ref_Key"]: "2", c["Ref_Key"]: "2"}

    notify(api, 1)
    assert set(select(api, 3)["entries"]) == {a["Ref_Key"], c["Ref_Key"]}
    notify(api, 3)
    assert select(api, 4) == {"entries": {}, "order": [], "deleted": []}

    api("DELETE", f"{COUNTERPARTIES}(guid'{b['Ref_Key']}')")
    api("PATCH", f"{COUNTERPARTIES}(guid'{c['Ref_Key']}')", json={"DeletionMark": True})
    fifth = select(api, 5)
    assert fifth["deleted"] == [b["Ref_Key"]] and b["Ref_Key"] not in fifth["entries"]
    assert fifth["entries"][c["Ref_Key"]]["DeletionMark"] == "true"

    nodes = api.rows("ExchangePlan_Ledgerlink")
    assert nodes[0]["Code"] == "BILLING" and nodes[0]["SentNo"] == "5" and nodes[0]["ReceivedNo"] == "3"
    # The node's URL relative to the service root, with its inner quotes not doubled, names it too.
    relative = select(api, 6, f"'ExchangePlan_Ledgerlink(guid'{nodes[0]['Ref_Key']}')'")
    assert set(relative["entries"]) == {c["Ref_Key"]} and relative["deleted"] == [b["Ref_Key"]]


def test_change_functions_check_their_arguments(api):
    params = {"DataExchangePoint": literal(node_url(api)), "MessageNo": "1"}
    unknown = api("POST", "SelectChanges", params={**params, "DataExchangePoint": literal(
        f"{api.root}ExchangePlan_Ledgerlink(guid'{uuid.uuid4()}')")})
    assert unknown.status_code == 404 and error_code(unknown) == "9"
    by_code = api("POST", "SelectChanges", params={**params, "DataExchangePoint": "'BILLING'"})
    assert by_code.status_code == 400  # the node is named by its URL, not its code
    bad_no = api("POST", "SelectChanges", params={**params, "MessageNo": "x"})
    assert bad_no.status_code == 400
    assert api("GET", "SelectChanges", params=params).status_code == 405
    assert api("GET", "NotifyChangesReceived", params=params).status_code == 405


def test_every_write_kind_registers_a_change(api, onec):
    doc = sale(api, counterparty(api)["Ref_Key"])
    select(api, 1)
    notify(api, 1)
    api("POST", f"{SALES}(guid'{doc['Ref_Key']}')/Post")
    pending = requests.get(onec.url + "/_sandbox/onec/changes", params={"node": "BILLING"}, timeout=5).json()
    assert [(c["entity_set"], c["ref_key"], c["message_no"]) for c in pending["value"]] == [
        (SALES, doc["Ref_Key"], None)]
    assert json.loads(json.dumps(pending))  # plain JSON for tests to read


def test_concurrent_writes_are_all_kept(onec):
    def create_five(worker: int) -> list[str]:
        client = Api(onec)
        try:
            return [client.create(COUNTERPARTIES, Description=f"{worker}-{i}")["DataVersion"] for i in range(5)]
        finally:
            client.session.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = [v for batch in pool.map(create_five, range(8)) for v in batch]
    assert len(set(versions)) == 40
    assert Api(onec)("GET", f"{COUNTERPARTIES}/$count").text == "40"
