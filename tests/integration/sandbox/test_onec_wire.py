"""The 1C stand-in's wire protocol as a real publication shows it, over plain HTTP: Atom by default, filter
functions and navigation paths, presentations, bound Post/Unpost in $metadata, and the web server in front
(IIS's URL limits, an HTML login page)."""
from __future__ import annotations

import uuid

import defusedxml.ElementTree as SafeET
import pytest
import requests

from tests.integration.sandbox.test_onec_odata import (
    COUNTERPARTIES, SALES, counterparty, error_code, sale,
)
from tests.support.onec_standin import Api, api, onec, start  # noqa: F401 - fixtures
from tests.support.sandbox_http import serving

ATOM = "{http://www.w3.org/2005/Atom}"
M = "{http://schemas.microsoft.com/ado/2007/08/dataservices/metadata}"
D = "{http://schemas.microsoft.com/ado/2007/08/dataservices}"
EDM = "{http://schemas.microsoft.com/ado/2009/11/edm}"





def plain_get(onec, path: str, **params) -> requests.Response:
    """A request that asks for no format at all, as a browser or a naive client would."""
    return requests.get(onec.url + "/demo/odata/standard.odata/" + path, params=params, auth=("ledgerlink", "secret"),
                        timeout=5)


def properties(entry) -> dict:
    return {el.tag.removeprefix(D): el for el in entry.find(f"{ATOM}content").find(f"{M}properties")}


# Atom by default (guide §17.4.3)
def test_a_collection_without_a_format_is_an_atom_feed_with_exact_values(api, onec):
    buyer = counterparty(api, "Альфа")
    document = api.create(SALES, Number="D-1", Date="2026-01-31T00:00:00", Контрагент_Key=buyer["Ref_Key"],
                          СуммаДокумента="1200.50", Услуги=[{"Содержание": "связь", "Сумма": "1200.50"}])
    response = plain_get(onec, SALES, **{"$inlinecount": "allpages"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/atom+xml;type=feed")
    feed = SafeET.fromstring(response.content)
    assert feed.find(f"{M}count").text == "1"
    (entry,) = feed.findall(f"{ATOM}entry")
    assert entry.find(f"{ATOM}id").text.endswith(f"{SALES}(guid'{document['Ref_Key']}')")
    assert entry.find(f"{ATOM}category").get("term") == f"StandardODATA.{SALES}"
    values = properties(entry)
    assert values["СуммаДокумента"].text == "1200.50" and values["СуммаДокумента"].get(f"{M}type") == "Edm.Double"
    assert values["Date"].text == "2026-01-31T00:00:00" and values["Posted"].text == "false"
    rows = values["Услуги"].findall(f"{D}element")
    assert [(r.find(f"{D}LineNumber").text, r.find(f"{D}Сумма").text) for r in rows] == [("1", "1200.50")]
    related = {link.get("title") for link in entry.findall(f"{ATOM}link") if "related" in link.get("rel")}
    assert related == {"Организация", "Контрагент", "ДоговорКонтрагента", "ВалютаДокумента",
                       "СчетУчетаРасчетовСКонтрагентом", "СчетУчетаРасчетовПоАвансам"}


def test_an_object_an_expansion_rows_and_an_error_in_atom(api, onec):
    buyer = counterparty(api, "Альфа")
    document = sale(api, buyer["Ref_Key"], Услуги=[{"Содержание": "a"}])
    api.session.patch(api.root + f"{SALES}(guid'{document['Ref_Key']}')", json={"Услуги": [
        {"Содержание": "a", "Номенклатура_Key": api.create("Catalog_Номенклатура", Description="Связь")["Ref_Key"]}]})
    single = plain_get(onec, f"{SALES}(guid'{document['Ref_Key']}')", **{"$expand": "Контрагент"})
    assert single.headers["Content-Type"].startswith("application/atom+xml;type=entry")
    entry = SafeET.fromstring(single.content)
    inline = [link.find(f"{M}inline") for link in entry.findall(f"{ATOM}link") if link.get("title") == "Контрагент"]
    assert properties(inline[0].find(f"{ATOM}entry"))["Description"].text == "Альфа"
    rows = SafeET.fromstring(plain_get(onec, f"{SALES}_Услуги").content)
    assert [properties(e)["Содержание"].text for e in rows.findall(f"{ATOM}entry")] == ["a"]
    missing = plain_get(onec, f"{SALES}(guid'{uuid.uuid4()}')")
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("application/xml")
    error = SafeET.fromstring(missing.content)
    assert error.tag == f"{M}error" and error.find(f"{M}code").text == "9" and error.find(f"{M}message").text
    posted = requests.post(api.root + f"{SALES}(guid'{document['Ref_Key']}')/Post", auth=("ledgerlink", "secret"),
                           timeout=5)
    assert posted.headers["Content-Type"].startswith("application/atom+xml;type=entry")
    assert properties(SafeET.fromstring(posted.content))["Posted"].text == "true"
    shown = SafeET.fromstring(plain_get(onec, SALES, **{"$select": "Number,Контрагент_Presentation"}).content)
    assert properties(shown.find(f"{ATOM}entry"))["Контрагент_Presentation"].text == "Альфа"
    # JSON still when asked, by $format or by Accept; $metadata and /$count are unchanged.
    assert plain_get(onec, SALES, **{"$format": "json"}).json()["value"][0]["Ref_Key"] == document["Ref_Key"]
    assert plain_get(onec, f"{SALES}/$count").text == "1"
    assert plain_get(onec, "$metadata").headers["Content-Type"].startswith("application/xml")


# $filter and $orderby: functions, navigation paths, literals
@pytest.fixture
def dataset(api):
    alpha = counterparty(api, "ООО Альфа", ИНН="7701000001")
    beta = counterparty(api, "АО Бета", ИНН="7802000002")
    docs = [
        api.create(SALES, Number="D-1", Date="2025-12-31T23:59:59", Контрагент_Key=alpha["Ref_Key"]),
        api.create(SALES, Number="D-2", Date="2026-01-31T00:00:00", Контрагент_Key=beta["Ref_Key"]),
        api.create(SALES, Number="D-3", Date="2026-02-10T12:30:00", Контрагент_Key=alpha["Ref_Key"],
                   Комментарий="срочно"),
        api.create(SALES, Number="D-4", Date="2026-02-11T00:00:00"),  # no counterparty
    ]
    return {"alpha": alpha, "beta": beta, "docs": docs}


@pytest.mark.parametrize("expression, expected", [
    ("substringof('альф', Контрагент/Description)", {"D-1", "D-3"}),  # case ignored, as 1C compares strings
    ("startswith(Number, 'd-')", {"D-1", "D-2", "D-3", "D-4"}),
    ("endswith(Number, '-2') or endswith(Number, '-4')", {"D-2", "D-4"}),
    ("like(Контрагент/Description, 'АО %')", {"D-2"}),
    ("like(Number, 'D-_')", {"D-1", "D-2", "D-3", "D-4"}),
    ("year(Date) eq 2026", {"D-2", "D-3", "D-4"}),
    ("year(Date) eq 2026 and month(Date) eq 2 and day(Date) eq 10", {"D-3"}),
    ("Date ge datetime'2026-01-31'", {"D-2", "D-3", "D-4"}),  # a date alone is its midnight
    ("Date lt datetime'2026-01-31'", {"D-1"}),
    ("Контрагент/ИНН eq '7701000001'", {"D-1", "D-3"}),
    ("Контрагент/ИНН eq null", {"D-4"}),  # an empty reference: its properties are null
    ("Комментарий ne null and Комментарий eq 'срочно'", {"D-3"}),  # a string property is never null
    ("Комментарий eq null", set()),
    ("substringof('срочн', Комментарий) eq true", {"D-3"}),
])
def test_filter_functions_and_navigation_paths(api, dataset, expression, expected):
    assert {d["Number"] for d in api.rows(SALES, **{"$filter": expression})} == expected


def test_orderby_a_navigation_path(api, dataset):
    ordered = api.rows(SALES, **{"$orderby": "Контрагент/ИНН desc, Number", "$select": "Number"})
    assert [d["Number"] for d in ordered] == ["D-2", "D-1", "D-3", "D-4"]  # no counterparty sorts last
    assert error_code(api("GET", SALES, params={"$orderby": "Контрагент/Нет"})) == "6"
    assert error_code(api("GET", SALES, params={"$filter": "Нет/ИНН eq '1'"})) == "21"


def test_presentations_named_keys_and_select_double_star(api, dataset):
    doc = dataset["docs"][0]
    named = api("GET", f"{SALES}(Ref_Key=guid'{doc['Ref_Key']}')",
                params={"$select": "Number,Контрагент_Presentation"})
    assert named.status_code == 200
    assert named.json() | {"odata.metadata": None} == {"odata.metadata": None, "Number": "D-1",
                                                       "Контрагент_Presentation": "ООО Альфа"}
    everything = api.rows(SALES, **{"$select": "**", "$filter": "Number eq 'D-4'"})[0]
    assert everything["Контрагент_Presentation"] == "" and everything["ДоговорКонтрагента_Presentation"] == ""
    assert everything["Number"] == "D-4" and "Услуги" in everything
    invoice = api.create("Document_СчетФактураВыданный", ДокументОснование=doc["Ref_Key"],
                         ДокументОснование_Type=f"StandardODATA.{SALES}")
    basis = api.get("Document_СчетФактураВыданный", invoice["Ref_Key"])
    assert "ДокументОснование_Presentation" not in basis  # only when asked
    shown = api.rows("Document_СчетФактураВыданный", **{"$select": "ДокументОснование_Presentation"})[0]
    assert shown["ДокументОснование_Presentation"] == "РеализацияТоваровУслуг D-1 от 31.12.2025 23:59:59"


def test_a_long_or_chain_is_answered_and_deep_nesting_is_a_clear_400(tmp_path):
    with serving(start(tmp_path, max_query_string=None, max_request_line=None)) as server:
        api = Api(server)
        wanted = [counterparty(api, f"C{i}")["Code"] for i in range(3)]
        codes = [f"{n:06d}x" for n in range(2500)] + wanted
        chain = " or ".join(f"Code eq '{code}'" for code in codes)
        # 2,503 terms (~60 kB, under http.server's own 64 kB line limit): answered, where a recursive
        # parser would have died with a RecursionError and closed the connection.
        found = api("GET", COUNTERPARTIES, params={"$filter": chain, "$select": "Code"})
        assert found.status_code == 200 and {r["Code"] for r in found.json()["value"]} == set(wanted)
        nested = "(" * 500 + "Code eq '1'" + ")" * 500
        deep = api("GET", COUNTERPARTIES, params={"$filter": nested})
        assert deep.status_code == 400 and error_code(deep) == "21" and "вложенность" in deep.text
        nots = api("GET", COUNTERPARTIES, params={"$filter": "not " * 500 + "DeletionMark"})
        assert nots.status_code == 400 and error_code(nots) == "21"


def test_metadata_declares_post_and_unpost_bound_to_each_document(api):
    root = SafeET.fromstring(api("GET", "$metadata").content)
    functions = [f for f in root.iter(f"{EDM}FunctionImport") if f.get("Name") in ("Post", "Unpost")]
    documents = {e.get("Name") for e in root.iter(f"{EDM}EntityType") if e.get("Name").startswith("Document_")
                 and e.get("Name").count("_") == 1}
    bound = {}
    for function in functions:
        assert function.get("IsBindable") == "true"
        parameters = {p.get("Name"): p.get("Type") for p in function.findall(f"{EDM}Parameter")}
        bound.setdefault(function.get("Name"), set()).add(parameters["bindingParameter"].split(".", 1)[1])
        if function.get("Name") == "Post":
            assert parameters["PostingModeOperational"] == "Edm.Boolean"
    assert bound == {"Post": documents, "Unpost": documents} and SALES in documents
    select_changes = [f for f in root.iter(f"{EDM}FunctionImport") if f.get("Name") == "SelectChanges"]
    assert select_changes[0].get(f"{M}HttpMethod") == "POST"


# the web server in front
def test_a_query_string_over_the_iis_limit_is_the_iis_404_15_page(onec, api):
    counterparty(api)
    prefix = "$format=json&$filter=Code%20eq%20'"
    fits = prefix + "x" * (2048 - len(prefix) - 1) + "'"  # already percent-encoded: sent as it is
    assert len(fits) == 2048
    assert api.session.get(f"{api.root}{COUNTERPARTIES}?{fits}", timeout=5).status_code == 200
    over = api.session.get(f"{api.root}{COUNTERPARTIES}?{fits.replace('x', 'xy', 1)}", timeout=5)  # 2,049 bytes
    assert over.status_code == 404 and over.headers["Content-Type"].startswith("text/html")
    assert "404.15" in over.text and "query string is too long" in over.text
    # Percent-encoding counts: 400 Cyrillic letters are 2,400 bytes on the wire.
    cyrillic = api("GET", COUNTERPARTIES, params={"$filter": "Description eq '" + "ж" * 400 + "'"})
    assert cyrillic.status_code == 404 and "404.15" in cyrillic.text


def test_a_request_line_over_the_limit_is_414(tmp_path):
    with serving(start(tmp_path, max_query_string=None, max_request_line=4096)) as server:
        api = Api(server)
        response = api("GET", COUNTERPARTIES, params={"$filter": "Code eq '" + "x" * 5000 + "'"})
        assert response.status_code == 414


def test_a_failed_login_can_be_an_html_page_with_status_200(tmp_path):
    with serving(start(tmp_path, login_page=True)) as server:
        url = server.url + f"/demo/odata/standard.odata/{COUNTERPARTIES}?$format=json"
        wrong = requests.get(url, auth=("ledgerlink", "nope"), timeout=5)
        assert wrong.status_code == 200 and wrong.headers["Content-Type"].startswith("text/html")
        assert "<form" in wrong.text
        assert requests.get(url, auth=("ledgerlink", "secret"), timeout=5).json()["value"] == []
