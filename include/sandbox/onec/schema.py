"""The configuration the stand-in publishes: entity sets, their fields and Edm types, in one table.

``CONFIGURATION`` lists each set's own attributes (as the configurator names them) and its tabular parts; the
standard attributes every object of a kind has (``Ref_Key``, ``DataVersion``, ``Code``/``Number``, ...) are
added from ``STANDARD_FIELDS``. A field is an Edm type, ``(Edm.Guid, target set)`` for a reference (the field
then ends in ``_Key`` and its navigation property, for ``$expand``, is the name without ``_Key``), or
``(Edm.String, length)`` for a string of a fixed length (a bare ``Edm.String`` is of unlimited length, 1C's
"Строка(0)"), ``enum(name)`` for an enumeration value (an ``Edm.String`` holding the value's name, one of
``ENUMERATIONS[name]``, or empty), or ``composite(set, ...)`` for an attribute of a composite type (two
``Edm.String`` properties: ``<Name>`` holding the object's guid and ``<Name>_Type`` its type,
``StandardODATA.<Set>``, or ``StandardODATA.Undefined`` when empty). To publish another set, add one entry to
``CONFIGURATION``.

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

The contracts, nomenclature and documents follow objects a real БП 3.0 base answered to ``GET`` (JSON quoted
in the comments of github.com/garikgsi/LaravelAPI, a client of one base: ``app/Contract.php``,
``app/Nomenklatura.php``, ``app/Act.php``, ``app/Valuta.php``, ``app/Firm.php``, ``app/SkladReceive.php``):

* ``Catalog_ДоговорыКонтрагентов``: hierarchical, owned by a counterparty (``Owner_Key``), Code ``00-000001``
  (9); ``Организация_Key`` (-> ``Catalog_Организации``), ``ВалютаВзаиморасчетов_Key`` (-> ``Catalog_Валюты``,
  not a string), ``ВидДоговора`` an enumeration value (``"СПокупателем"``), ``Номер`` and ``Дата`` (empty
  until filled: ``""`` and ``0001-01-01T00:00:00``), ``СрокДействия``, ``РасчетыВУсловныхЕдиницах``,
  ``Комментарий``. Description 100 and ``Номер`` unlimited are the stand-in's choice (the real lengths were not
  at hand). No unique-code check (the stand-in's choice).
* ``Catalog_Номенклатура``: hierarchical, Code ``00-00000001`` (11); ``ЕдиницаИзмерения_Key`` (a reference to
  ``Catalog_КлассификаторЕдиницИзмерения``, not a string), ``Услуга``, ``НаименованиеПолное``, ``Артикул``,
  ``Комментарий``, and no VAT rate of its own: the real item carries ``УдалитьСтавкаНДС`` (the old attribute,
  left empty and not published here) and ``ВидСтавкиНДС`` ``"Общая"`` (enumeration ``ВидыСтавокНДС``; a
  public client sets ``Перечисления.ВидыСтавокНДС.Общая`` on a service item). The rate itself is chosen per
  document row. Description 100 is the stand-in's choice.
* ``Document_РеализацияТоваровУслуг``: ``ВидОперации`` (``"Товары"``, ``"Услуги"``, ...), ``Организация_Key``,
  ``Контрагент_Key``, ``ДоговорКонтрагента_Key``, ``ВалютаДокумента_Key`` (-> ``Catalog_Валюты``),
  ``КурсВзаиморасчетов`` (Double), ``КратностьВзаиморасчетов`` (Int64), ``СуммаВключаетНДС``, ``ДокументБезНДС``,
  ``СуммаДокумента``, ``СчетУчетаРасчетовСКонтрагентом_Key`` and ``СчетУчетаРасчетовПоАвансам_Key``
  (-> ``ChartOfAccounts_Хозрасчетный``), ``Комментарий``; the ``Услуги`` row: ``Номенклатура_Key``,
  ``Содержание``, ``Количество``, ``Цена``, ``Сумма``, ``СтавкаНДС`` (an enumeration value, ``"НДС20"``),
  ``СуммаНДС`` (no unit: the unit is the item's).
* The VAT rate: an enumeration value ``СтавкаНДС`` in the rows, not a reference ``СтавкаНДС_Key``. The
  ``Catalog_СтавкиНДС`` references seen in public dumps come from other configurations (Управление торговлей
  11, 1C:Бухгалтерия для Казахстана); a static audit of a 2026 БухгалтерияПредприятияКОРП's metadata (public
  code writing ``reports/1c_vat_legislation_audit.docx``, repository not identified) lists the enumeration
  ``СтавкиНДС`` with exactly the 14 values of ``ENUMERATIONS["СтавкиНДС"]``, 22 % included, and real objects
  (the client above) carry ``"СтавкаНДС": "НДС20"`` and ``"БезНДС"``. The stand-in refuses any other value.
* ``Document_СчетФактураВыданный``: ``ДокументОснование`` of a composite type, published as
  ``ДокументОснование`` + ``ДокументОснование_Type`` (both ``Edm.String``; how 1C publishes composite types, per
  the OData type table of lexema-ecm.readthedocs.io "Получение данных" and a published ``$metadata`` of the
  same document in 1C:Бухгалтерия для Казахстана); the stand-in allows a sale or a bank receipt (an advance)
  as its basis. ``ВидСчетаФактуры`` (``"НаРеализацию"``/``"НаАванс"``), ``КодВидаОперации`` 2 (``"01"``),
  ``Организация_Key``, ``Контрагент_Key``, ``ДоговорКонтрагента_Key``, ``ВалютаДокумента_Key``,
  ``СуммаДокумента``, ``СуммаНДСДокумента``: names as the author knows БП 3.0, not seen in a public dump.
* ``Document_ПоступлениеНаРасчетныйСчет``: ``ВидОперации`` (``"ОплатаПокупателя"``, ...), ``Организация_Key``,
  ``Контрагент_Key``, ``ВалютаДокумента_Key``, ``СуммаДокумента``, ``НазначениеПлатежа``,
  ``НомерВходящегоДокумента``/``ДатаВходящегоДокумента``; the contract is per row of ``РасшифровкаПлатежа``
  (``ДоговорКонтрагента_Key``, ``СуммаПлатежа``, ``КурсВзаиморасчетов``, ``СуммаВзаиморасчетов``,
  ``СтавкаНДС``, ``СуммаНДС``, ``СпособПогашенияЗадолженности``, the settlement accounts), as a 1C:Fresh
  client of БП reads the rows (``СуммаПлатежа``, ``СуммаВзаиморасчетов``, ``СтавкаНДС``, ``СуммаНДС``,
  ``СпособПогашенияЗадолженности``). Doubtful: a real base may type ``Контрагент`` as a composite
  (counterparty or person); the stand-in keeps a plain reference.
* Reference catalogs a new base already holds (``SEED``): ``Catalog_Валюты`` (Code 3 = ОКВ, ``"643"``
  Description ``"руб."``, НаименованиеПолное ``"Российский рубль"``, ``ПараметрыПрописи``; unique codes),
  ``Catalog_КлассификаторЕдиницИзмерения`` (Code = ОКЕИ, ``"796"`` ``"шт"`` ``"Штука"``; unique codes),
  ``Catalog_Организации`` (the base's own organisation: Code ``00-000001``, ИНН, КПП, СтранаРегистрации_Key),
  ``ChartOfAccounts_Хозрасчетный`` (the predefined accounts a settlement refers to: 62.01, 62.02, 51). Lengths
  of these catalogs (Description 10/25/100/120, Code 4 for units and 8 for accounts) are the stand-in's choice.
* Enumeration values besides ``СтавкиНДС``: the ones public clients and samples send (``СПокупателем``,
  ``Товары``/``Услуги``, ``ОплатаПокупателя``, ``Общая``, ``Автоматически``) plus their siblings as the author
  knows the configuration; a value missing here is refused by the stand-in though a real base may take it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

STRING, BOOLEAN, DECIMAL, DOUBLE, INT64, DATETIME, GUID = (
    "Edm.String", "Edm.Boolean", "Edm.Decimal", "Edm.Double", "Edm.Int64", "Edm.DateTime", "Edm.Guid",
)
EDM_TYPES = {STRING, BOOLEAN, DECIMAL, DOUBLE, INT64, DATETIME, GUID}
NUMBERS = {DECIMAL, DOUBLE, INT64}
ENUM, COMPOSITE = "enum", "composite"  # spec markers, published as Edm.String
TYPE_PREFIX = "StandardODATA."
UNDEFINED_TYPE = TYPE_PREFIX + "Undefined"  # the type of an empty composite attribute
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE = "0001-01-01T00:00:00"
EMPTY_VALUES = {
    STRING: "", BOOLEAN: False, DECIMAL: "0", DOUBLE: "0", INT64: "0", DATETIME: EMPTY_DATE, GUID: EMPTY_GUID,
}

COUNTERPARTIES = "Catalog_Контрагенты"
COUNTRIES = "Catalog_СтраныМира"
CONTACT_KINDS = "Catalog_ВидыКонтактнойИнформации"
ORGANISATIONS = "Catalog_Организации"
CURRENCIES = "Catalog_Валюты"
UNITS = "Catalog_КлассификаторЕдиницИзмерения"
ACCOUNTS = "ChartOfAccounts_Хозрасчетный"
CONTRACTS = "Catalog_ДоговорыКонтрагентов"
PRODUCTS = "Catalog_Номенклатура"
SALES = "Document_РеализацияТоваровУслуг"
VAT_INVOICES = "Document_СчетФактураВыданный"
BANK_RECEIPTS = "Document_ПоступлениеНаРасчетныйСчет"
EXCHANGE_PLAN = "ExchangePlan_Ledgerlink"


def text(length: int) -> tuple[str, int]:
    """A string attribute of ``length`` characters (1C cuts a longer value when it writes)."""
    return STRING, length


def enum(name: str) -> tuple[str, str]:
    """An attribute holding a value of the enumeration ``name`` (``ENUMERATIONS``)."""
    return ENUM, name


def composite(*sets: str) -> tuple[str, tuple[str, ...]]:
    """An attribute of a composite type: a reference to an object of any of ``sets``."""
    return COMPOSITE, sets


# Enumerations by the configuration's name; the empty value ("") is always allowed. See the module doc.
ENUMERATIONS: dict[str, tuple[str, ...]] = {
    "СтавкиНДС": ("БезНДС", "НДС0", "НДС5", "НДС7", "НДС10", "НДС18", "НДС20", "НДС22", "НДС5_105", "НДС7_107",
                  "НДС10_110", "НДС18_118", "НДС20_120", "НДС22_122"),
    "ВидыСтавокНДС": ("Общая", "Пониженная", "Нулевая", "БезНДС"),
    "ВидыДоговоровКонтрагентов": ("СПоставщиком", "СПокупателем", "СКомитентом", "СКомиссионером",
                                  "СКомитентомНаЗакупку", "СКомиссионеромНаЗакупку", "СФакторинговойКомпанией",
                                  "Прочее"),
    "ВидыОперацийРеализацияТоваров": ("Товары", "Услуги", "ПродажаКомиссия", "ОборудованиеВМонтаж",
                                      "ОбъектыСтроительства"),
    "ВидыОперацийПоступлениеДенежныхСредств": ("ОплатаПокупателя", "ВозвратОтПоставщика", "ПрочееПоступление",
                                               "ПоступлениеОтПродажПоПлатежнымКартам"),
    "ВидСчетаФактурыВыставленного": ("НаРеализацию", "НаАванс"),
    "СпособыПогашенияЗадолженности": ("Автоматически", "ПоДокументу", "НеПогашать"),
    "ЮридическоеФизическоеЛицо": ("ЮридическоеЛицо", "ФизическоеЛицо"),
}

STANDARD_FIELDS: dict[str, dict] = {
    "Catalog": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Code": STRING,
                "Description": STRING, "Predefined": BOOLEAN, "PredefinedDataName": STRING},
    "ChartOfAccounts": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Code": STRING,
                        "Description": STRING, "Predefined": BOOLEAN, "PredefinedDataName": STRING},
    "Document": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Number": STRING,
                 "Date": DATETIME, "Posted": BOOLEAN},
    "ExchangePlan": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Code": STRING,
                     "Description": STRING, "SentNo": INT64, "ReceivedNo": INT64},
}

# The contract kinds a document of each set may be written under (1C offers only these in the contract's
# choice list and checks them when posting): selling, and being paid for it.
SELLING_CONTRACTS = ("СПокупателем", "СКомиссионером")

CONFIGURATION: dict[str, dict] = {
    COUNTERPARTIES: {
        "hierarchical": True, "code_length": 9, "description_length": 100, "check_unique": True,
        "fields": {
            "НаименованиеПолное": STRING, "ИНН": text(12), "КПП": text(9),
            "ЮридическоеФизическоеЛицо": enum("ЮридическоеФизическоеЛицо"),
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
    ORGANISATIONS: {
        "code_length": 9, "description_length": 100,
        "fields": {
            "НаименованиеПолное": STRING, "НаименованиеСокращенное": STRING, "ИНН": text(12), "КПП": text(9),
            "ЮридическоеФизическоеЛицо": enum("ЮридическоеФизическоеЛицо"),
            "СтранаРегистрации_Key": (GUID, COUNTRIES),
        },
    },
    CURRENCIES: {
        "code_length": 3, "description_length": 10, "check_unique": True,
        "fields": {"НаименованиеПолное": text(50), "ПараметрыПрописи": STRING, "ЗагружаетсяИзИнтернета": BOOLEAN},
    },
    UNITS: {
        "code_length": 4, "description_length": 25, "check_unique": True,
        "fields": {"НаименованиеПолное": text(100)},
    },
    ACCOUNTS: {
        "code_length": 8, "description_length": 120, "check_unique": True,
        "fields": {},
    },
    CONTRACTS: {
        "hierarchical": True, "code_length": 9, "description_length": 100,
        "fields": {
            "Owner_Key": (GUID, COUNTERPARTIES), "Организация_Key": (GUID, ORGANISATIONS),
            "ВидДоговора": enum("ВидыДоговоровКонтрагентов"), "ВалютаВзаиморасчетов_Key": (GUID, CURRENCIES),
            "РасчетыВУсловныхЕдиницах": BOOLEAN, "Номер": STRING, "Дата": DATETIME, "СрокДействия": DATETIME,
            "Комментарий": STRING,
        },
    },
    PRODUCTS: {
        "hierarchical": True, "code_length": 11, "description_length": 100,
        "fields": {
            "НаименованиеПолное": STRING, "Артикул": STRING, "ЕдиницаИзмерения_Key": (GUID, UNITS),
            "Услуга": BOOLEAN, "ВидСтавкиНДС": enum("ВидыСтавокНДС"), "Комментарий": STRING,
        },
    },
    SALES: {
        "fields": {
            "ВидОперации": enum("ВидыОперацийРеализацияТоваров"), "Организация_Key": (GUID, ORGANISATIONS),
            "Контрагент_Key": (GUID, COUNTERPARTIES), "ДоговорКонтрагента_Key": (GUID, CONTRACTS),
            "ВалютаДокумента_Key": (GUID, CURRENCIES), "КурсВзаиморасчетов": DOUBLE,
            "КратностьВзаиморасчетов": INT64, "СуммаВключаетНДС": BOOLEAN, "ДокументБезНДС": BOOLEAN,
            "СуммаДокумента": DOUBLE, "СчетУчетаРасчетовСКонтрагентом_Key": (GUID, ACCOUNTS),
            "СчетУчетаРасчетовПоАвансам_Key": (GUID, ACCOUNTS), "Комментарий": STRING,
        },
        "tabular_parts": {
            "Услуги": {
                "LineNumber": INT64, "Номенклатура_Key": (GUID, PRODUCTS), "Содержание": STRING,
                "Количество": DOUBLE, "Цена": DOUBLE, "Сумма": DOUBLE, "СтавкаНДС": enum("СтавкиНДС"),
                "СуммаНДС": DOUBLE,
            },
        },
        # What the configuration's filling check requires before posting.
        "required": ("Организация_Key", "Контрагент_Key", "ДоговорКонтрагента_Key"),
        "required_in_rows": {"Услуги": ("Номенклатура_Key",)},
        "contract_kinds": SELLING_CONTRACTS,
    },
    VAT_INVOICES: {
        "fields": {
            "ВидСчетаФактуры": enum("ВидСчетаФактурыВыставленного"), "КодВидаОперации": text(2),
            "Организация_Key": (GUID, ORGANISATIONS), "Контрагент_Key": (GUID, COUNTERPARTIES),
            "ДоговорКонтрагента_Key": (GUID, CONTRACTS), "ДокументОснование": composite(SALES, BANK_RECEIPTS),
            "ВалютаДокумента_Key": (GUID, CURRENCIES), "СуммаДокумента": DOUBLE, "СуммаНДСДокумента": DOUBLE,
            "Комментарий": STRING,
        },
        "required": ("Организация_Key", "Контрагент_Key", "ДокументОснование"),
        "contract_kinds": SELLING_CONTRACTS,
    },
    BANK_RECEIPTS: {
        "fields": {
            "ВидОперации": enum("ВидыОперацийПоступлениеДенежныхСредств"), "Организация_Key": (GUID, ORGANISATIONS),
            "Контрагент_Key": (GUID, COUNTERPARTIES), "ВалютаДокумента_Key": (GUID, CURRENCIES),
            "СуммаДокумента": DOUBLE, "НазначениеПлатежа": STRING, "НомерВходящегоДокумента": STRING,
            "ДатаВходящегоДокумента": DATETIME, "Комментарий": STRING,
        },
        "tabular_parts": {
            "РасшифровкаПлатежа": {
                "LineNumber": INT64, "ДоговорКонтрагента_Key": (GUID, CONTRACTS), "СуммаПлатежа": DOUBLE,
                "КурсВзаиморасчетов": DOUBLE, "СуммаВзаиморасчетов": DOUBLE, "СтавкаНДС": enum("СтавкиНДС"),
                "СуммаНДС": DOUBLE, "СпособПогашенияЗадолженности": enum("СпособыПогашенияЗадолженности"),
                "СчетУчетаРасчетовСКонтрагентом_Key": (GUID, ACCOUNTS),
                "СчетУчетаРасчетовПоАвансам_Key": (GUID, ACCOUNTS),
            },
        },
        "required": ("Организация_Key", "Контрагент_Key"),
        "required_in_rows": {"РасшифровкаПлатежа": ("ДоговорКонтрагента_Key",)},
        "contract_kinds": SELLING_CONTRACTS,
    },
    EXCHANGE_PLAN: {"fields": {}},
}

# Items a real base already holds when an exchange starts, matched on ``match`` so a restart adds nothing twice:
# the countries picked from the classifier (ОКСМ: Code is the numeric code, as a real base writes "643" for
# Russia), the predefined contact information kinds of БП 3.0, the currencies (ОКВ codes) and units (ОКЕИ
# codes) picked from their classifiers, the base's own organisation, and the predefined settlement accounts.
# ``refs`` names a reference to another seeded item by that item's ``match`` value.
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
    CURRENCIES: {"match": "Code", "items": [
        {"Code": "643", "Description": "руб.", "НаименованиеПолное": "Российский рубль",
         "ПараметрыПрописи": "рубль, рубля, рублей, м, копейка, копейки, копеек, ж, 2"},
        {"Code": "949", "Description": "TRY", "НаименованиеПолное": "Турецкая лира", "ЗагружаетсяИзИнтернета": True,
         "ПараметрыПрописи": "турецкая лира, турецкие лиры, турецких лир, ж, куруш, куруша, курушей, м, 2"},
        {"Code": "840", "Description": "USD", "НаименованиеПолное": "Доллар США", "ЗагружаетсяИзИнтернета": True,
         "ПараметрыПрописи": "доллар, доллара, долларов, м, цент, цента, центов, м, 2"},
        {"Code": "978", "Description": "EUR", "НаименованиеПолное": "Евро", "ЗагружаетсяИзИнтернета": True,
         "ПараметрыПрописи": "евро, евро, евро, м, евроцент, евроцента, евроцентов, м, 2"},
    ]},
    UNITS: {"match": "Code", "items": [
        {"Code": "796", "Description": "шт", "НаименованиеПолное": "Штука"},
        {"Code": "876", "Description": "усл. ед", "НаименованиеПолное": "Условная единица"},
        {"Code": "355", "Description": "мин", "НаименованиеПолное": "Минута"},
    ]},
    ORGANISATIONS: {"match": "ИНН", "items": [
        {"ИНН": "7701452833", "КПП": "770101001", "Code": "00-000001", "Description": "Леджерлинк Демо ООО",
         "НаименованиеПолное": "Общество с ограниченной ответственностью \"Леджерлинк Демо\"",
         "НаименованиеСокращенное": "ООО \"Леджерлинк Демо\"", "ЮридическоеФизическоеЛицо": "ЮридическоеЛицо",
         "refs": {"СтранаРегистрации_Key": (COUNTRIES, "643")}},
    ]},
    ACCOUNTS: {"match": "Code", "items": [
        {"Code": "51", "Description": "Расчетные счета", "Predefined": True, "PredefinedDataName": "РасчетныеСчета"},
        {"Code": "62.01", "Description": "Расчеты с покупателями и заказчиками", "Predefined": True,
         "PredefinedDataName": "РасчетыСПокупателями"},
        {"Code": "62.02", "Description": "Расчеты по авансам полученным", "Predefined": True,
         "PredefinedDataName": "РасчетыПоАвансамПолученным"},
    ]},
}


@dataclass(frozen=True)
class Field:
    name: str
    edm: str
    target: str | None = None  # the entity set a reference field points to
    max_length: int = 0  # strings: the attribute's length; 0 is unlimited (and every non-string)
    enum: str | None = None  # the enumeration whose values the string holds
    types: tuple[str, ...] = ()  # a composite attribute's value: the sets its object may belong to
    type_of: str | None = None  # a composite attribute's ``_Type`` property: the value property it types

    @property
    def navigation(self) -> str | None:
        """Navigation property of a reference field (``Контрагент_Key`` -> ``Контрагент``)."""
        return self.name[: -len("_Key")] if self.target else None

    @property
    def empty(self):
        """The value of an attribute nobody filled."""
        return UNDEFINED_TYPE if self.type_of else EMPTY_VALUES[self.edm]


@dataclass(frozen=True)
class TabularPart:
    name: str
    fields: dict[str, Field]
    required: tuple[str, ...] = ()  # filled in every row before posting


@dataclass(frozen=True)
class EntitySet:
    name: str
    kind: str  # Catalog, ChartOfAccounts, Document, ExchangePlan
    fields: dict[str, Field]
    tabular_parts: dict[str, TabularPart] = field(default_factory=dict)
    check_unique: bool = False  # the platform refuses a second object with the same Code
    required: tuple[str, ...] = ()  # filled before posting (the configuration's filling check)
    contract_kinds: tuple[str, ...] = ()  # ВидДоговора values a document's contract may have

    @property
    def references(self) -> dict[str, Field]:
        """Reference fields by navigation property name."""
        return {f.navigation: f for f in self.fields.values() if f.target}

    @property
    def composites(self) -> dict[str, Field]:
        """Value properties of composite attributes by name (their ``_Type`` is ``<name>_Type``)."""
        return {f.name: f for f in self.fields.values() if f.types}

    @property
    def is_document(self) -> bool:
        return self.kind == "Document"


def _field(name: str, spec) -> Field:
    edm, detail = spec if isinstance(spec, tuple) else (spec, None)
    if edm == ENUM:
        if detail not in ENUMERATIONS:
            raise ValueError(f"{name}: unknown enumeration {detail}")
        return Field(name, STRING, enum=detail)
    if edm == COMPOSITE:
        return Field(name, STRING, types=tuple(detail))
    if edm not in EDM_TYPES:
        raise ValueError(f"{name}: unknown Edm type {edm}")
    if edm == STRING:
        return Field(name, edm, max_length=detail or 0)
    return Field(name, edm, target=detail)


def _fields(specs: dict) -> dict[str, Field]:
    """Fields in order; a composite attribute's ``_Type`` property comes last, as real metadata lists it."""
    fields = {name: _field(name, spec) for name, spec in specs.items()}
    for name in [n for n, f in fields.items() if f.types]:
        fields[f"{name}_Type"] = Field(f"{name}_Type", STRING, type_of=name)
    return fields


def _standard_fields(set_name: str, kind: str, spec: dict) -> dict:
    """The kind's standard attributes, with the catalog's code and description lengths and hierarchy."""
    fields = dict(STANDARD_FIELDS[kind])
    if kind in ("Catalog", "ChartOfAccounts"):
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
        fields = _fields({**_standard_fields(set_name, kind, spec), **spec.get("fields", {})})
        required_in_rows = spec.get("required_in_rows", {})
        parts = {
            part: TabularPart(part, _fields(row), tuple(required_in_rows.get(part, ())))
            for part, row in spec.get("tabular_parts", {}).items()
        }
        sets[set_name] = EntitySet(set_name, kind, fields, parts, check_unique=spec.get("check_unique", False),
                                   required=tuple(spec.get("required", ())),
                                   contract_kinds=tuple(spec.get("contract_kinds", ())))
    for entity_set in sets.values():
        all_fields = list(entity_set.fields.values())
        all_fields += [f for p in entity_set.tabular_parts.values() for f in p.fields.values()]
        targets = [f.target for f in all_fields if f.target] + [t for f in all_fields for t in f.types]
        unknown = [t for t in targets if t not in sets]
        if unknown:
            raise ValueError(f"{entity_set.name} references unknown sets {unknown}")
        missing = [n for n in entity_set.required if n not in entity_set.fields]
        missing += [n for p in entity_set.tabular_parts.values() for n in p.required if n not in p.fields]
        if missing:
            raise ValueError(f"{entity_set.name} requires unknown fields {missing}")
    return sets


SCHEMA = build_schema()
