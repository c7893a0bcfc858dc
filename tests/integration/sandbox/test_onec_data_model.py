"""The 1C stand-in's data model through plain HTTP: a БП 3.0 counterparty, attribute lengths, unique codes,
unknown properties, and a base that ignores If-Match (see ``sandbox.onec.schema`` and ``sandbox.onec.infobase``
for the sources each behaviour follows)."""
from __future__ import annotations

import uuid

import defusedxml.ElementTree as SafeET
import pytest

from tests.support.onec_standin import Api, start
from tests.support.sandbox_http import serving

COUNTERPARTIES = "Catalog_Контрагенты"
COUNTRIES = "Catalog_СтраныМира"
KINDS = "Catalog_ВидыКонтактнойИнформации"
SALES = "Document_РеализацияТоваровУслуг"
EDM = "{http://schemas.microsoft.com/ado/2009/11/edm}"




@pytest.fixture
def api(tmp_path):
    with serving(start(tmp_path)) as server:
        client = Api(server)
        yield client
        client.session.close()


def country(api: Api, alpha2: str) -> dict:
    [row] = api.rows(COUNTRIES, **{"$filter": f"КодАльфа2 eq '{alpha2}'"})
    return row


def legal_address_kind(api: Api) -> str:
    [row] = api.rows(KINDS, **{"$filter": "PredefinedDataName eq 'ЮрАдресКонтрагента'"})
    return row["Ref_Key"]


# 1. the counterparty of a real БП 3.0 base
def test_countries_are_seeded_with_their_classifier_codes(api):
    turkey, russia = country(api, "TR"), country(api, "RU")
    assert (turkey["Code"], turkey["Description"], turkey["КодАльфа3"]) == ("792", "ТУРЦИЯ", "TUR")
    assert (russia["Code"], russia["НаименованиеПолное"]) == ("643", "Российская Федерация")
    assert turkey["Predefined"] is False and uuid.UUID(turkey["Ref_Key"])


def test_a_counterparty_has_the_real_shape(api):
    created = api.create(COUNTERPARTIES)
    for name in ("Parent_Key", "IsFolder", "СтранаРегистрации_Key", "ИНН", "КПП", "НалоговыйНомер",
                 "РегистрационныйНомер", "КонтактнаяИнформация", "Predefined", "PredefinedDataName"):
        assert name in created, name
    # Strings for the country and the address are not what a real base publishes.
    assert "СтранаРегистрации" not in created and "ЮридическийАдрес" not in created
    assert created["СтранаРегистрации@navigationLinkUrl"].endswith("/СтранаРегистрации")


def test_a_foreign_counterparty_with_its_address_in_contact_information(api):
    kind, turkey = legal_address_kind(api), country(api, "TR")
    folder = api.create(COUNTERPARTIES, Description="Покупатели Турция", IsFolder=True)
    created = api.create(
        COUNTERPARTIES, Description="Ankara Telekom A.S.", Parent_Key=folder["Ref_Key"],
        СтранаРегистрации_Key=turkey["Ref_Key"], НалоговыйНомер="1234567890", РегистрационныйНомер="98765",
        КонтактнаяИнформация=[{"Тип": "Адрес", "Вид_Key": kind, "Представление": "Atatürk Blv. 1, Ankara",
                                 "ЗначенияПолей": '{"country": "ТУРЦИЯ"}', "Страна": "ТУРЦИЯ", "Город": "Ankara"}])
    stored = api.get(COUNTERPARTIES, created["Ref_Key"])
    assert (stored["ИНН"], stored["НалоговыйНомер"], stored["Parent_Key"]) == ("", "1234567890", folder["Ref_Key"])
    [row] = stored["КонтактнаяИнформация"]
    assert (row["LineNumber"], row["Тип"], row["Вид_Key"], row["Город"]) == ("1", "Адрес", kind, "Ankara")
    assert row["Ref_Key"] == created["Ref_Key"]
    expanded = api("GET", f"{COUNTERPARTIES}(guid'{created['Ref_Key']}')", params={"$expand": "СтранаРегистрации"})
    assert expanded.json()["СтранаРегистрации"]["Code"] == "792"
    by_country = api.rows(COUNTERPARTIES, **{"$filter": f"СтранаРегистрации_Key eq guid'{turkey['Ref_Key']}'"})
    assert [c["Description"] for c in by_country] == ["Ankara Telekom A.S."]


def test_predefined_items_are_the_platforms(api):
    kind = legal_address_kind(api)
    assert api.get(KINDS, kind)["Predefined"] is True
    response = api.patch(KINDS, kind, Predefined=False, PredefinedDataName="Моё", Description="Юр. адрес")
    assert response.status_code == 200
    assert (response.json()["Predefined"], response.json()["PredefinedDataName"]) == (True, "ЮрАдресКонтрагента")


def test_seeded_items_are_created_once_across_restarts(tmp_path):
    for _ in range(2):
        with serving(start(tmp_path)) as server:
            api = Api(server)
            codes = [c["Code"] for c in api.rows(COUNTRIES)]
            kinds = [k["PredefinedDataName"] for k in api.rows(KINDS)]
            api.session.close()
        assert sorted(codes) == sorted(set(codes)) and "792" in codes
        assert kinds.count("ЮрАдресКонтрагента") == 1


# 2. lengths, unique codes, Edm.Double
def test_metadata_declares_string_lengths_and_doubles(api):
    root = SafeET.fromstring(api("GET", "$metadata").content)
    props = {t.get("Name"): {p.get("Name"): p for p in t.iter(f"{EDM}Property")} for t in root.iter(f"{EDM}EntityType")}
    counterparty = props[COUNTERPARTIES]
    assert {n: counterparty[n].get("MaxLength") for n in ("Description", "Code", "ИНН", "КПП")} == {
        "Description": "100", "Code": "9", "ИНН": "12", "КПП": "9"}
    assert counterparty["НаименованиеПолное"].get("MaxLength") is None  # unlimited
    assert counterparty["СтранаРегистрации_Key"].get("Type") == "Edm.Guid"
    assert props[f"{COUNTERPARTIES}_КонтактнаяИнформация"]["Представление"].get("MaxLength") == "500"
    assert props[SALES]["СуммаДокумента"].get("Type") == "Edm.Double"
    assert props[f"{SALES}_Услуги"]["Количество"].get("Type") == "Edm.Double"


def test_too_long_strings_are_cut_silently(api):
    long_name = "Очень длинное наименование " * 6  # 162 characters
    created = api.create(COUNTERPARTIES, Description=long_name, НаименованиеПолное=long_name, ИНН="77012345678901",
                         КонтактнаяИнформация=[{"Тип": "Адрес", "Город": "Г" * 60}])
    assert created["Description"] == long_name[:100]
    assert created["НаименованиеПолное"] == long_name  # unlimited
    assert created["ИНН"] == "770123456789"
    assert created["КонтактнаяИнформация"][0]["Город"] == "Г" * 50
    patched = api.patch(COUNTERPARTIES, created["Ref_Key"], КПП="7701010010000")
    assert patched.status_code == 200 and patched.json()["КПП"] == "770101001"


def test_a_duplicate_code_is_a_business_error(api):
    first = api.create(COUNTERPARTIES, Code="C000001", Description="Первый")
    response = api("POST", COUNTERPARTIES, json={"Code": "C000001", "Description": "Второй"})
    assert response.status_code == 500
    error = response.json()["odata.error"]
    assert error["code"] == "-1" and 'Значение поля "Код" не уникально' in error["message"]["value"]
    assert api("POST", COUNTERPARTIES, json={"Code": "c000001 "}).status_code == 500  # as 1C compares strings
    second = api.create(COUNTERPARTIES, Code="C000002", Description="Второй")
    assert api.patch(COUNTERPARTIES, second["Ref_Key"], Code="C000001").status_code == 500
    assert api.patch(COUNTERPARTIES, first["Ref_Key"], Code="C000001", Description="Тот же").status_code == 200
    # Codes cut to the attribute's length are compared as stored: these two collide.
    assert api.create(COUNTERPARTIES, Code="C00000300")["Code"] == "C00000300"
    assert api("POST", COUNTERPARTIES, json={"Code": "C000003001"}).status_code == 500


def test_doubles_keep_their_exact_decimal_text(api):
    response = api("POST", SALES, json={"СуммаДокумента": "1200.10"})
    assert response.status_code == 201 and '"СуммаДокумента":1200.10' in response.text
    filtered = api.rows(SALES, **{"$filter": "СуммаДокумента gt 1200.09"})
    assert len(filtered) == 1


# 3. unknown properties
def test_unknown_properties_are_ignored_on_post_and_patch(api):
    created = api.create(COUNTERPARTIES, Description="Альфа", ЮридическийАдрес="Москва", НетТакого=1,
                         КонтактнаяИнформация=[{"Тип": "Адрес", "Индекс": "101000"}])
    assert "ЮридическийАдрес" not in created and "НетТакого" not in created
    assert "Индекс" not in created["КонтактнаяИнформация"][0]
    response = api.patch(COUNTERPARTIES, created["Ref_Key"], СтранаРегистрации="RU", Description="Альфа-2")
    assert response.status_code == 200
    stored = api.get(COUNTERPARTIES, created["Ref_Key"])
    assert stored["Description"] == "Альфа-2" and "СтранаРегистрации" not in stored


# 4. If-Match honoured (the guide) or ignored (some real bases)
def test_if_match_is_honoured_by_default(api):
    created = api.create(COUNTERPARTIES, Description="Альфа")
    api.patch(COUNTERPARTIES, created["Ref_Key"], Description="Альфа (бухгалтер)")
    stale = api.patch(COUNTERPARTIES, created["Ref_Key"], {"If-Match": created["DataVersion"]}, Description="Бета")
    assert stale.status_code == 412


def test_a_base_that_ignores_if_match_applies_a_stale_patch(tmp_path):
    with serving(start(tmp_path, honour_if_match=False)) as server:
        api = Api(server)
        created = api.create(COUNTERPARTIES, Description="Альфа")
        api.patch(COUNTERPARTIES, created["Ref_Key"], Description="Альфа (бухгалтер)")
        stale = api.patch(COUNTERPARTIES, created["Ref_Key"], {"If-Match": created["DataVersion"]},
                          Description="Бета")
        assert stale.status_code == 200 and stale.json()["Description"] == "Бета"
        deleted = api("DELETE", f"{COUNTERPARTIES}(guid'{created['Ref_Key']}')",
                      headers={"If-Match": created["DataVersion"]})
        assert deleted.status_code == 204
        api.session.close()


def test_an_infobase_from_an_older_configuration_opens_with_the_new_attributes_empty(tmp_path):
    """A sandbox kept from before the counterparty had its БП 3.0 shape: 1C updates the configuration and shows
    the new attributes empty (the old string attributes are no longer published)."""
    from sandbox.onec.store import Store

    old_key = str(uuid.uuid4())
    store = Store(tmp_path / "onec.sqlite")
    store.insert(COUNTERPARTIES, {"Ref_Key": old_key, "DataVersion": "AAAAAAAAAAE=", "DeletionMark": False,
                                  "Code": "C000001", "Description": "Альфа", "ИНН": "7701234567",
                                  "СтранаРегистрации": "RU", "ЮридическийАдрес": "Москва"})
    store.close()
    with serving(start(tmp_path)) as server:
        api = Api(server)
        old = api.get(COUNTERPARTIES, old_key)
        assert (old["ИНН"], old["НалоговыйНомер"], old["КонтактнаяИнформация"]) == ("7701234567", "", [])
        assert "ЮридическийАдрес" not in old
        assert api.patch(COUNTERPARTIES, old_key, СтранаРегистрации_Key=country(api, "RU")["Ref_Key"]).status_code == 200
        api.session.close()
