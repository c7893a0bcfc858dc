"""The configuration the stand-in publishes: entity sets, their fields and Edm types, in one table.

``CONFIGURATION`` lists each set's own attributes (as the configurator names them) and its tabular parts; the
standard attributes every object of a kind has (``Ref_Key``, ``DataVersion``, ``Code``/``Number``, ...) are
added from ``STANDARD_FIELDS``. A field is an Edm type, ``(Edm.Guid, target set)`` for a reference (the field
then ends in ``_Key`` and its navigation property, for ``$expand``, is the name without ``_Key``), or
``(Edm.String, length)`` for a string of a fixed length (a bare ``Edm.String`` is of unlimited length, 1C's
"Строка(0)"). To publish another set, add one entry to ``CONFIGURATION``.

Where each shape comes from:

* ``Catalog_Контрагенты`` as in a real Бухгалтерия предприятия 3.0 base: an object published by a real
  base (``GET Catalog_Контрагенты``, quoted in public clients) carries ``Parent_Key``, ``IsFolder``,
  ``Code`` like ``00-000036`` (9 characters), ``СтранаРегистрации_Key``, ``ИНН``, ``КПП``,
  ``НалоговыйНомер``, ``РегистрационныйНомер``, ``Predefined``/``PredefinedDataName`` and the tabular part
  ``КонтактнаяИнформация``; there is no string ``СтранаРегистрации`` nor ``ЮридическийАдрес`` (the address is a
  row of ``КонтактнаяИнформация``). Lengths: Description 100, Code 9, ИНН 12, КПП 9, НаименованиеПолное and
  Комментарий unlimited (the configuration). ``НалоговыйНомер`` and ``РегистрационныйНомер`` are given 50: the
  stand-in's choice, the real lengths were not at hand. Codes are unique (the catalog's "check unique", as
  1C's own demo configuration sets it for its Контрагенты).
* The ``КонтактнаяИнформация`` row (Тип, Вид_Key, Представление 500, ЗначенияПолей unlimited, Страна 100,
  Регион 50, Город 50, АдресЭП, ДоменноеИмяСервера, НомерТелефона, НомерТелефонаБезКодов, ВидДляСписка_Key)
  follows the row types public clients declare for БП 3.0 and the configuration's attribute lengths.
* ``Catalog_СтраныМира`` (Code 3 = the ОКСМ/ISO 3166 numeric code, Description, НаименованиеПолное 100,
  КодАльфа2 2, КодАльфа3 3) and ``Catalog_ВидыКонтактнойИнформации`` (predefined kinds found by
  ``PredefinedDataName``, e.g. ``ЮрАдресКонтрагента``) as real bases publish them. ``SEED`` holds the items
  a real base already has (the countries picked from the classifier, the predefined kinds): the stand-in
  creates them once, each with a Ref_Key of its own, as every real base has its own.
* Fractional numbers are ``Edm.Double``, as real published metadata types them (a БП 3.0 ``$metadata`` dump
  in public code: ``РайонныйКоэффициентРФ`` ``Edm.Double``); the stand-in still keeps and sends their exact
  decimal text, so a client reading the JSON text as Decimal loses nothing.
* ``MaxLength`` on strings in ``$metadata``: the real dumps read declare strings without it; the stand-in
  declares the attribute's length as a CSDL facet (harmless to a client that ignores it), so a client can
  see the limit it would otherwise only learn by losing characters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

STRING, BOOLEAN, DECIMAL, DOUBLE, INT64, DATETIME, GUID = (
    "Edm.String", "Edm.Boolean", "Edm.Decimal", "Edm.Double", "Edm.Int64", "Edm.DateTime", "Edm.Guid",
)
EDM_TYPES = {STRING, BOOLEAN, DECIMAL, DOUBLE, INT64, DATETIME, GUID}
NUMBERS = {DECIMAL, DOUBLE, INT64}

COUNTERPARTIES = "Catalog_Контрагенты"
COUNTRIES = "Catalog_СтраныМира"
CONTACT_KINDS = "Catalog_ВидыКонтактнойИнформации"
CONTRACTS = "Catalog_ДоговорыКонтрагентов"
PRODUCTS = "Catalog_Номенклатура"
SALES = "Document_РеализацияТоваровУслуг"
VAT_INVOICES = "Document_СчетФактураВыданный"
BANK_RECEIPTS = "Document_ПоступлениеНаРасчетныйСчет"
EXCHANGE_PLAN = "ExchangePlan_Ledgerlink"


def text(length: int) -> tuple[str, int]:
    """A string attribute of ``length`` characters (1C cuts a longer value when it writes)."""
    return STRING, length


STANDARD_FIELDS: dict[str, dict] = {
    "Catalog": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Code": STRING,
                "Description": STRING, "Predefined": BOOLEAN, "PredefinedDataName": STRING},
    "Document": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Number": STRING,
                 "Date": DATETIME, "Posted": BOOLEAN},
    "ExchangePlan": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Code": STRING,
                     "Description": STRING, "SentNo": INT64, "ReceivedNo": INT64},
}

CONFIGURATION: dict[str, dict] = {
    COUNTERPARTIES: {
        "hierarchical": True, "code_length": 9, "description_length": 100, "check_unique": True,
        "fields": {
            "НаименованиеПолное": STRING, "ИНН": text(12), "КПП": text(9),
            "ЮридическоеФизическоеЛицо": STRING,  # an enumeration: "ЮридическоеЛицо" / "ФизическоеЛицо"
            "СтранаРегистрации_Key": (GUID, COUNTRIES), "НалоговыйНомер": text(50),
            "РегистрационныйНомер": text(50), "Комментарий": STRING,
        },
        "tabular_parts": {
            "КонтактнаяИнформация": {
                "LineNumber": INT64,
                "Тип": STRING,  # an enumeration: "Адрес", "Телефон", "АдресЭлектроннойПочты", ...
                "Вид_Key": (GUID, CONTACT_KINDS), "Представление": text(500), "ЗначенияПолей": STRING,
                "Страна": text(100), "Регион": text(50), "Город": text(50), "АдресЭП": text(100),
                "ДоменноеИмяСервера": text(100), "НомерТелефона": text(20), "НомерТелефонаБезКодов": text(20),
                "ВидДляСписка_Key": (GUID, CONTACT_KINDS),
            },
        },
    },
    COUNTRIES: {
        "code_length": 3, "description_length": 100, "check_unique": True,
        "fields": {"НаименованиеПолное": text(100), "КодАльфа2": text(2), "КодАльфа3": text(3)},
    },
    CONTACT_KINDS: {
        "hierarchical": True, "description_length": 100,
        "fields": {"Тип": STRING},
    },
    CONTRACTS: {
        "fields": {
            "Owner_Key": (GUID, COUNTERPARTIES), "Номер": STRING, "Дата": DATETIME,
            "ВалютаВзаиморасчетов": STRING, "ВидДоговора": STRING, "Комментарий": STRING,
        },
    },
    PRODUCTS: {
        "fields": {
            "НаименованиеПолное": STRING, "ЕдиницаИзмерения": STRING, "СтавкаНДС": STRING, "Услуга": BOOLEAN,
        },
    },
    SALES: {
        "fields": {
            "Контрагент_Key": (GUID, COUNTERPARTIES), "ДоговорКонтрагента_Key": (GUID, CONTRACTS),
            "ВалютаДокумента": STRING, "СуммаДокумента": DOUBLE, "Комментарий": STRING,
        },
        "tabular_parts": {
            "Услуги": {
                "LineNumber": INT64, "Номенклатура_Key": (GUID, PRODUCTS), "Содержание": STRING,
                "Количество": DOUBLE, "Цена": DOUBLE, "Сумма": DOUBLE, "СтавкаНДС": STRING,
                "СуммаНДС": DOUBLE,
            },
        },
    },
    VAT_INVOICES: {
        "fields": {
            "Контрагент_Key": (GUID, COUNTERPARTIES),
            # In the real configuration the basis is of a composite type; the stand-in narrows it to sales.
            "ДокументОснование_Key": (GUID, SALES),
            "СуммаДокумента": DOUBLE, "СуммаНДС": DOUBLE, "ВалютаДокумента": STRING,
        },
    },
    BANK_RECEIPTS: {
        "fields": {
            "Контрагент_Key": (GUID, COUNTERPARTIES), "ДоговорКонтрагента_Key": (GUID, CONTRACTS),
            "СуммаДокумента": DOUBLE, "ВалютаДокумента": STRING, "НазначениеПлатежа": STRING,
        },
    },
    EXCHANGE_PLAN: {"fields": {}},
}

# Items a real base already holds when an exchange starts: the countries picked from the classifier (ОКСМ:
# Code is the numeric code, as a real base writes "643" for Russia) and the predefined contact information
# kinds of БП 3.0. Matched on ``match`` so a restart adds nothing twice.
SEED: dict[str, dict] = {
    COUNTRIES: {"match": "Code", "items": [
        {"Code": "643", "Description": "РОССИЯ", "НаименованиеПолное": "Российская Федерация",
         "КодАльфа2": "RU", "КодАльфа3": "RUS"},
        {"Code": "792", "Description": "ТУРЦИЯ", "НаименованиеПолное": "Турецкая Республика",
         "КодАльфа2": "TR", "КодАльфа3": "TUR"},
        {"Code": "398", "Description": "КАЗАХСТАН", "НаименованиеПолное": "Республика Казахстан",
         "КодАльфа2": "KZ", "КодАльфа3": "KAZ"},
        {"Code": "112", "Description": "БЕЛАРУСЬ", "НаименованиеПолное": "Республика Беларусь",
         "КодАльфа2": "BY", "КодАльфа3": "BLR"},
    ]},
    CONTACT_KINDS: {"match": "PredefinedDataName", "items": [
        {"PredefinedDataName": "СправочникКонтрагенты", "Predefined": True, "IsFolder": True,
         "Description": "Справочник \"Контрагенты\""},
        {"PredefinedDataName": "ЮрАдресКонтрагента", "Predefined": True, "Description": "Юридический адрес",
         "Тип": "Адрес", "parent": "СправочникКонтрагенты"},
        {"PredefinedDataName": "ФактАдресКонтрагента", "Predefined": True, "Description": "Фактический адрес",
         "Тип": "Адрес", "parent": "СправочникКонтрагенты"},
        {"PredefinedDataName": "ТелефонКонтрагента", "Predefined": True, "Description": "Телефон",
         "Тип": "Телефон", "parent": "СправочникКонтрагенты"},
        {"PredefinedDataName": "EmailКонтрагента", "Predefined": True, "Description": "Электронная почта",
         "Тип": "АдресЭлектроннойПочты", "parent": "СправочникКонтрагенты"},
    ]},
}


@dataclass(frozen=True)
class Field:
    name: str
    edm: str
    target: str | None = None  # the entity set a reference field points to
    max_length: int = 0  # strings: the attribute's length; 0 is unlimited (and every non-string)

    @property
    def navigation(self) -> str | None:
        """Navigation property of a reference field (``Контрагент_Key`` -> ``Контрагент``)."""
        return self.name[: -len("_Key")] if self.target else None


@dataclass(frozen=True)
class TabularPart:
    name: str
    fields: dict[str, Field]


@dataclass(frozen=True)
class EntitySet:
    name: str
    kind: str  # Catalog, Document, ExchangePlan
    fields: dict[str, Field]
    tabular_parts: dict[str, TabularPart] = field(default_factory=dict)
    check_unique: bool = False  # the platform refuses a second object with the same Code

    @property
    def references(self) -> dict[str, Field]:
        """Reference fields by navigation property name."""
        return {f.navigation: f for f in self.fields.values() if f.target}

    @property
    def is_document(self) -> bool:
        return self.kind == "Document"


def _field(name: str, spec) -> Field:
    edm, detail = spec if isinstance(spec, tuple) else (spec, None)
    if edm not in EDM_TYPES:
        raise ValueError(f"{name}: unknown Edm type {edm}")
    if edm == STRING:
        return Field(name, edm, max_length=detail or 0)
    return Field(name, edm, target=detail)


def _standard_fields(set_name: str, kind: str, spec: dict) -> dict:
    """The kind's standard attributes, with the catalog's code and description lengths and hierarchy."""
    fields = dict(STANDARD_FIELDS[kind])
    if kind == "Catalog":
        if spec.get("hierarchical"):
            fields = {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN,
                      "Parent_Key": (GUID, set_name), "IsFolder": BOOLEAN, **fields}
        if "code_length" in spec:
            fields["Code"] = text(spec["code_length"])
        if "description_length" in spec:
            fields["Description"] = text(spec["description_length"])
    return fields


def build_schema(configuration: dict[str, dict] = CONFIGURATION) -> dict[str, EntitySet]:
    """Entity sets by name, standard fields first, then the configuration's own."""
    sets = {}
    for set_name, spec in configuration.items():
        kind = set_name.split("_", 1)[0]
        specs = {**_standard_fields(set_name, kind, spec), **spec.get("fields", {})}
        fields = {name: _field(name, s) for name, s in specs.items()}
        parts = {
            part: TabularPart(part, {name: _field(name, s) for name, s in row.items()})
            for part, row in spec.get("tabular_parts", {}).items()
        }
        sets[set_name] = EntitySet(set_name, kind, fields, parts, check_unique=spec.get("check_unique", False))
    for entity_set in sets.values():
        targets = [f.target for f in entity_set.fields.values() if f.target]
        targets += [f.target for p in entity_set.tabular_parts.values() for f in p.fields.values() if f.target]
        unknown = [t for t in targets if t not in sets]
        if unknown:
            raise ValueError(f"{entity_set.name} references unknown sets {unknown}")
    return sets


SCHEMA = build_schema()
