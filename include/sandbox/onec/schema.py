"""The configuration the stand-in publishes: entity sets, their fields and Edm types, in one table.

``CONFIGURATION`` lists each set's own attributes (as the configurator names them) and its tabular parts; the
standard attributes every object of a kind has (``Ref_Key``, ``DataVersion``, ``Code``/``Number``, ...) are
added from ``STANDARD_FIELDS``. A field is an Edm type, or ``(Edm.Guid, target set)`` for a reference: the
field then ends in ``_Key`` and its navigation property (for ``$expand``) is the name without ``_Key``.
To publish another set, add one entry to ``CONFIGURATION``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

STRING, BOOLEAN, DECIMAL, INT64, DATETIME, GUID = (
    "Edm.String", "Edm.Boolean", "Edm.Decimal", "Edm.Int64", "Edm.DateTime", "Edm.Guid",
)
EDM_TYPES = {STRING, BOOLEAN, DECIMAL, INT64, DATETIME, GUID}

COUNTERPARTIES = "Catalog_Контрагенты"
CONTRACTS = "Catalog_ДоговорыКонтрагентов"
PRODUCTS = "Catalog_Номенклатура"
SALES = "Document_РеализацияТоваровУслуг"
VAT_INVOICES = "Document_СчетФактураВыданный"
BANK_RECEIPTS = "Document_ПоступлениеНаРасчетныйСчет"
EXCHANGE_PLAN = "ExchangePlan_Ledgerlink"

STANDARD_FIELDS: dict[str, dict[str, str]] = {
    "Catalog": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Code": STRING,
                "Description": STRING},
    "Document": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Number": STRING,
                 "Date": DATETIME, "Posted": BOOLEAN},
    "ExchangePlan": {"Ref_Key": GUID, "DataVersion": STRING, "DeletionMark": BOOLEAN, "Code": STRING,
                     "Description": STRING, "SentNo": INT64, "ReceivedNo": INT64},
}

CONFIGURATION: dict[str, dict] = {
    COUNTERPARTIES: {
        "fields": {
            "НаименованиеПолное": STRING, "ИНН": STRING, "КПП": STRING,
            "ЮридическоеФизическоеЛицо": STRING,  # "ЮридическоеЛицо" / "ФизическоеЛицо"
            "СтранаРегистрации": STRING, "ЮридическийАдрес": STRING, "Комментарий": STRING,
        },
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
            "ВалютаДокумента": STRING, "СуммаДокумента": DECIMAL, "Комментарий": STRING,
        },
        "tabular_parts": {
            "Услуги": {
                "LineNumber": INT64, "Номенклатура_Key": (GUID, PRODUCTS), "Содержание": STRING,
                "Количество": DECIMAL, "Цена": DECIMAL, "Сумма": DECIMAL, "СтавкаНДС": STRING,
                "СуммаНДС": DECIMAL,
            },
        },
    },
    VAT_INVOICES: {
        "fields": {
            "Контрагент_Key": (GUID, COUNTERPARTIES),
            # In the real configuration the basis is of a composite type; the stand-in narrows it to sales.
            "ДокументОснование_Key": (GUID, SALES),
            "СуммаДокумента": DECIMAL, "СуммаНДС": DECIMAL, "ВалютаДокумента": STRING,
        },
    },
    BANK_RECEIPTS: {
        "fields": {
            "Контрагент_Key": (GUID, COUNTERPARTIES), "ДоговорКонтрагента_Key": (GUID, CONTRACTS),
            "СуммаДокумента": DECIMAL, "ВалютаДокумента": STRING, "НазначениеПлатежа": STRING,
        },
    },
    EXCHANGE_PLAN: {"fields": {}},
}


@dataclass(frozen=True)
class Field:
    name: str
    edm: str
    target: str | None = None  # the entity set a reference field points to

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

    @property
    def references(self) -> dict[str, Field]:
        """Reference fields by navigation property name."""
        return {f.navigation: f for f in self.fields.values() if f.target}

    @property
    def is_document(self) -> bool:
        return self.kind == "Document"


def _field(name: str, spec) -> Field:
    edm, target = spec if isinstance(spec, tuple) else (spec, None)
    if edm not in EDM_TYPES:
        raise ValueError(f"{name}: unknown Edm type {edm}")
    return Field(name, edm, target)


def build_schema(configuration: dict[str, dict] = CONFIGURATION) -> dict[str, EntitySet]:
    """Entity sets by name, standard fields first, then the configuration's own."""
    sets = {}
    for set_name, spec in configuration.items():
        kind = set_name.split("_", 1)[0]
        specs = {**STANDARD_FIELDS[kind], **spec.get("fields", {})}
        fields = {name: _field(name, s) for name, s in specs.items()}
        parts = {
            part: TabularPart(part, {name: _field(name, s) for name, s in row.items()})
            for part, row in spec.get("tabular_parts", {}).items()
        }
        sets[set_name] = EntitySet(set_name, kind, fields, parts)
    for entity_set in sets.values():
        targets = [f.target for f in entity_set.fields.values() if f.target]
        targets += [f.target for p in entity_set.tabular_parts.values() for f in p.fields.values() if f.target]
        unknown = [t for t in targets if t not in sets]
        if unknown:
            raise ValueError(f"{entity_set.name} references unknown sets {unknown}")
    return sets


SCHEMA = build_schema()
