"""Deterministic demo data for the billing system and the ERP stand-ins.

The same seed gives the same rows, byte for byte: every random draw comes from ``random.Random`` streams
named after the seed and the thing drawn, and every date is counted from fixed instants (no wall clock).
Billing and the ERP share the customer stream, so both databases describe the same legal entities.

Conventions the rest of the project can rely on:

* money is an integer count of minor units (kuruş, kopecks), never a float;
* fractional quantities are decimal text (``'125.5'``);
* timestamps are ISO 8601 in UTC with the offset written out (``2026-01-31T10:00:00+00:00``);
  plain dates are ``YYYY-MM-DD``;
* usage covers the twelve months 2025-11 .. 2026-10; the demo's "now" is :data:`AS_OF`;
* an invoice line's quantity is participant-minutes (ports x minutes), its VAT is rounded half-up per
  line, and an invoice's totals are the exact sums of its lines;
* Russian lines for 2025 periods carry VAT 20 %, from 2026 22 % (the tariff table holds today's rate).

Targets are a SQLite file path, ``sqlite:///path``, or a ``postgresql://`` / ``postgresql+psycopg://``
URL. SQLite is written with ``executemany`` in one transaction, PostgreSQL with ``COPY``; rows are
streamed in batches so memory stays flat at millions of rows.

Nothing here imports ``ledgerlink``.
"""
from __future__ import annotations

import argparse
import bisect
import math
import random
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "AS_OF",
    "BILLING_DDL",
    "BILLING_INDEXES",
    "BILLING_TABLES",
    "ERP_DDL",
    "ERP_INDEXES",
    "ERP_TABLES",
    "MUTATION_INSTANT",
    "PERIOD_MONTHS",
    "TARIFFS",
    "TARIFF_PLANS",
    "CustomerProfile",
    "TariffPlan",
    "build_customers",
    "generate_billing",
    "generate_billing_postgres",
    "generate_erp",
    "main",
    "mutate_billing",
    "round_half_up_div",
]

UTC = timezone.utc
PERIOD_MONTHS: tuple[tuple[int, int], ...] = tuple(
    ((2025 if month >= 11 else 2026), month) for month in (11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
)
AS_OF = datetime(2026, 11, 15, tzinfo=UTC)
"""The demo's "now": every generated timestamp and date lies before it."""
MUTATION_INSTANT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
"""Default ``updated_at`` written by :func:`mutate_billing`; later than anything generated."""
BATCH_ROWS = 50_000
USAGE_ROWS_PER_CUSTOMER = 20
"""Default usage volume: a few thousand calls at the default 300 customers."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = 86_400
_AS_OF_EPOCH = int((AS_OF - _EPOCH).total_seconds())


# --------------------------------------------------------------------------------------------- schema

_TEXT, _INT, _MONEY = "TEXT", "INTEGER", "BIGINT"  # BIGINT: money sums outgrow PostgreSQL's int4


@dataclass(frozen=True)
class Table:
    """One table of a stand-in database; its DDL is plain SQL that SQLite and PostgreSQL both accept."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...]
    indexed: tuple[str, ...] = ()
    not_null: frozenset[str] = field(default_factory=frozenset)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def create_sql(self) -> str:
        parts = [
            f"{name} {sql_type}{' NOT NULL' if name in self.not_null or name in self.primary_key else ''}"
            for name, sql_type in self.columns
        ]
        parts.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        return f"CREATE TABLE {self.name} (\n    " + ",\n    ".join(parts) + "\n)"

    def index_sql(self) -> tuple[str, ...]:
        return tuple(f"CREATE INDEX ix_{self.name}_{col} ON {self.name} ({col})" for col in self.indexed)


def _table(name: str, spec: str, primary_key: str, indexed: str = "", nullable: str = "") -> Table:
    """Build a :class:`Table` from ``"col TYPE, col TYPE"``; every column is NOT NULL unless listed."""
    columns = tuple(tuple(part.split()) for part in spec.split(","))
    nullable_set = set(nullable.split())
    return Table(
        name=name,
        columns=columns,  # type: ignore[arg-type]
        primary_key=tuple(primary_key.split()),
        indexed=tuple(indexed.split()),
        not_null=frozenset(col for col, _ in columns if col not in nullable_set),
    )


BILLING_TABLES: tuple[Table, ...] = (
    _table(
        "customers",
        f"customer_id {_TEXT}, legal_name {_TEXT}, country {_TEXT}, entity_kind {_TEXT}, tax_id {_TEXT},"
        f" kpp {_TEXT}, address {_TEXT}, city {_TEXT}, email {_TEXT}, currency {_TEXT}, segment {_TEXT},"
        f" created_at {_TEXT}, updated_at {_TEXT}",
        "customer_id", "updated_at tax_id", nullable="kpp",
    ),
    _table(
        "contracts",
        f"contract_id {_TEXT}, customer_id {_TEXT}, number {_TEXT}, signed_on {_TEXT}, currency {_TEXT},"
        f" status {_TEXT}, updated_at {_TEXT}",
        "contract_id", "customer_id updated_at",
    ),
    _table(
        "tariffs",
        f"tariff_id {_TEXT}, name {_TEXT}, unit {_TEXT}, price_minor {_MONEY}, currency {_TEXT},"
        f" vat_rate {_TEXT}, updated_at {_TEXT}",
        "tariff_id", "updated_at",
    ),
    _table(
        "contract_rates",
        f"contract_id {_TEXT}, tariff_id {_TEXT}, price_minor {_MONEY}, valid_from {_TEXT}",
        "contract_id tariff_id valid_from", "tariff_id",
    ),
    # How a tariff rates conference usage: the per-call billing increment (a call's seconds rounded up to it),
    # minutes included each period, the period's minimum charge, and how money is rounded to the minor unit
    # (half_up, half_even, up, down). Its per-minute prices are its tiers.
    _table(
        "tariff_plans",
        f"tariff_id {_TEXT}, billing_increment_seconds {_INT}, included_minutes {_INT},"
        f" minimum_charge_minor {_MONEY}, rounding {_TEXT}, updated_at {_TEXT}",
        "tariff_id",
    ),
    # Graduated tiers: a period's participant-minutes from ``from_minutes`` on cost ``price_per_minute`` (exact
    # decimal text in major units, four places as billing systems keep prices).
    _table(
        "tariff_tiers",
        f"tariff_id {_TEXT}, from_minutes {_INT}, price_per_minute {_TEXT}",
        "tariff_id from_minutes",
    ),
    # Which tariff a contract's conference usage is rated with, and when (valid_to exclusive; NULL: open).
    _table(
        "contract_plans",
        f"contract_id {_TEXT}, tariff_id {_TEXT}, valid_from {_TEXT}, valid_to {_TEXT}",
        "contract_id valid_from", "tariff_id", nullable="valid_to",
    ),
    # source_file: the bridge file a call was imported from (NULL for usage recorded by billing itself). usage_id is
    # 64-bit: a usage table outgrows int4, and imported calls carry ids derived from their call ids.
    _table(
        "usage",
        f"usage_id {_MONEY}, customer_id {_TEXT}, contract_id {_TEXT}, tariff_id {_TEXT}, call_id {_TEXT},"
        f" started_at {_TEXT}, duration_seconds {_INT}, participants {_INT}, source_file {_TEXT}",
        "usage_id", "customer_id contract_id tariff_id started_at call_id source_file", nullable="source_file",
    ),
    _table(
        "invoices",
        f"invoice_id {_TEXT}, customer_id {_TEXT}, contract_id {_TEXT}, number {_TEXT}, issue_date {_TEXT},"
        f" period_start {_TEXT}, period_end {_TEXT}, currency {_TEXT}, net_minor {_MONEY},"
        f" vat_minor {_MONEY}, gross_minor {_MONEY}, status {_TEXT}, updated_at {_TEXT},"
        # A credit note (its amounts negative) names the invoice it returns; NULL on every other document.
        f" credits_invoice_id {_TEXT}",
        "invoice_id", "customer_id contract_id updated_at", nullable="credits_invoice_id",
    ),
    _table(
        "invoice_lines",
        f"line_id {_TEXT}, invoice_id {_TEXT}, line_no {_INT}, tariff_id {_TEXT}, description {_TEXT},"
        f" quantity {_TEXT}, unit_price_minor {_MONEY}, net_minor {_MONEY}, vat_rate {_TEXT},"
        f" vat_minor {_MONEY}, gross_minor {_MONEY}, currency {_TEXT}, updated_at {_TEXT}",
        "line_id", "invoice_id tariff_id updated_at",
    ),
    _table(
        "payments",
        f"payment_id {_TEXT}, customer_id {_TEXT}, invoice_id {_TEXT}, paid_on {_TEXT},"
        f" amount_minor {_MONEY}, currency {_TEXT}, reference {_TEXT}, updated_at {_TEXT}",
        "payment_id", "customer_id invoice_id updated_at",
    ),
)

ERP_TABLES: tuple[Table, ...] = (
    _table(
        "erp_customers",
        f"erp_id {_TEXT}, billing_customer_id {_TEXT}, legal_name {_TEXT}, country {_TEXT}, tax_id {_TEXT},"
        f" kpp {_TEXT}, address {_TEXT}, city {_TEXT}, updated_at {_TEXT}",
        "erp_id", "billing_customer_id tax_id updated_at", nullable="kpp billing_customer_id",
    ),
    _table(
        "products",
        f"sku {_TEXT}, name {_TEXT}, unit {_TEXT}, price_minor {_MONEY}, currency {_TEXT}, vat_rate {_TEXT},"
        f" stock_qty {_INT}, updated_at {_TEXT}",
        "sku", "updated_at",
    ),
    _table(
        "sales_orders",
        f"order_id {_TEXT}, erp_customer_id {_TEXT}, crm_deal_ref {_TEXT}, order_date {_TEXT},"
        f" currency {_TEXT}, total_minor {_MONEY}, status {_TEXT}, updated_at {_TEXT}",
        "order_id", "erp_customer_id updated_at", nullable="crm_deal_ref",
    ),
    _table(
        "sales_order_lines",
        f"order_id {_TEXT}, line_no {_INT}, sku {_TEXT}, quantity {_TEXT}, price_minor {_MONEY},"
        f" net_minor {_MONEY}",
        "order_id line_no", "sku",
    ),
)

BILLING_DDL: tuple[str, ...] = tuple(table.create_sql() for table in BILLING_TABLES)
"""``CREATE TABLE`` statements valid on both SQLite and PostgreSQL."""
BILLING_INDEXES: tuple[str, ...] = tuple(sql for table in BILLING_TABLES for sql in table.index_sql())
ERP_DDL: tuple[str, ...] = tuple(table.create_sql() for table in ERP_TABLES)
ERP_INDEXES: tuple[str, ...] = tuple(sql for table in ERP_TABLES for sql in table.index_sql())


# --------------------------------------------------------------------------------------------- arithmetic

def round_half_up_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half away from zero (``Decimal``'s ROUND_HALF_UP), exactly."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def _vat_minor(net_minor: int, vat_rate: str) -> int:
    return round_half_up_div(net_minor * int(vat_rate), 100)


def _quantity_text(tenths: int) -> str:
    """Participant-minutes held as tenths, written as decimal text (``1255`` -> ``'125.5'``)."""
    return f"{tenths // 10}.{tenths % 10}"


# --------------------------------------------------------------------------------------------- tax ids

def _vkn_check_digit(first_nine: str) -> str:
    """Turkish VKN check digit (the Revenue Administration's algorithm, as python-stdnum implements it)."""
    total = 0
    for position, digit in enumerate(reversed(first_nine), 1):
        shifted = (int(digit) + position) % 10
        if shifted:
            total += (shifted * 2 ** position) % 9 or 9
    return str((10 - total) % 10)


def _tckn_check_digits(first_nine: str) -> str:
    odd = sum(int(d) for d in first_nine[0::2])
    even = sum(int(d) for d in first_nine[1::2])
    tenth = (odd * 7 - even) % 10
    eleventh = (odd + even + tenth) % 10
    return f"{tenth}{eleventh}"


_INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_1 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_2 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def _inn_weighted(digits: str, weights: Sequence[int]) -> str:
    return str(sum(w * int(d) for w, d in zip(weights, digits)) % 11 % 10)


def _make_vkn(rng: random.Random) -> str:
    body = f"{rng.randint(1, 9)}{rng.randrange(10 ** 8):08d}"
    return body + _vkn_check_digit(body)


def _make_tckn(rng: random.Random) -> str:
    body = f"{rng.randint(1, 9)}{rng.randrange(10 ** 8):08d}"  # a TCKN never starts with 0
    return body + _tckn_check_digits(body)


def _make_company_inn(rng: random.Random, region: str) -> str:
    # region (2) + tax office (2) + serial (5) + check digit
    body = f"{region}{rng.randint(1, 51):02d}{rng.randrange(10 ** 5):05d}"
    return body + _inn_weighted(body, _INN10_WEIGHTS)


def _make_person_inn(rng: random.Random, region: str) -> str:
    body = f"{region}{rng.randint(1, 51):02d}{rng.randrange(10 ** 6):06d}"
    first = _inn_weighted(body, _INN12_WEIGHTS_1)
    return body + first + _inn_weighted(body + first, _INN12_WEIGHTS_2)


# --------------------------------------------------------------------------------------------- names

_TR_NAME_HEADS = (
    "Anadolu", "Boğaziçi", "Ege", "Karadeniz", "Marmara", "Toros", "Kapadokya", "Yıldız", "Güneş", "Çınar",
    "Akdeniz", "Başkent", "Öncü", "Kuzey", "Şahin", "Doğuş", "Fırat", "Uludağ", "Erciyes", "Göktürk",
)
_TR_NAME_SECTORS = (
    "Bilişim", "Teknoloji", "Lojistik", "Danışmanlık", "Enerji", "Gıda", "Tekstil", "Yazılım", "İletişim",
    "Eğitim", "Sağlık Hizmetleri", "İnşaat", "Turizm", "Otomotiv", "Medya",
)
_TR_FORMS = ("A.Ş.", "A.Ş.", "Ltd. Şti.", "San. ve Tic. A.Ş.", "Tic. Ltd. Şti.")
_TR_FIRST = (
    "Ayşe", "Mehmet", "Fatma", "Mustafa", "Emine", "Ahmet", "Hatice", "Ali", "Zeynep", "Hüseyin", "Elif",
    "Hasan", "Özlem", "İbrahim", "Şule", "Çağrı", "Gökhan", "Gülşen", "Oğuz", "Ümit", "Büşra", "Serkan",
)
_TR_LAST = (
    "Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Yıldırım", "Öztürk", "Aydın", "Özdemir",
    "Arslan", "Doğan", "Kılıç", "Aslan", "Çetin", "Kara", "Koç", "Kurt", "Özkan", "Şimşek", "Güler",
)
# (city, province plate code, districts)
_TR_CITIES = (
    ("İstanbul", "34", ("Kadıköy", "Beşiktaş", "Şişli", "Üsküdar", "Ataşehir", "Sarıyer")),
    ("Ankara", "06", ("Çankaya", "Keçiören", "Yenimahalle", "Etimesgut")),
    ("İzmir", "35", ("Konak", "Karşıyaka", "Bornova", "Buca")),
    ("Bursa", "16", ("Osmangazi", "Nilüfer", "Yıldırım")),
    ("Antalya", "07", ("Muratpaşa", "Konyaaltı", "Kepez")),
    ("Eskişehir", "26", ("Tepebaşı", "Odunpazarı")),
    ("Gaziantep", "27", ("Şahinbey", "Şehitkamil")),
    ("Trabzon", "61", ("Ortahisar", "Akçaabat")),
)
_TR_STREETS = (
    "Atatürk Cad.", "İstiklal Cad.", "Cumhuriyet Cad.", "Gazi Mustafa Kemal Blv.", "Bağdat Cad.",
    "Şehit Mehmet Sk.", "Gül Sk.", "Çiçek Sk.", "Menekşe Sk.", "İnönü Cad.", "Fevzi Çakmak Cad.",
)

# (masculine, feminine, neuter) forms, so adjectives agree with the noun they name
_RU_ADJECTIVES = (
    ("Северный", "Северная", "Северное"), ("Уральский", "Уральская", "Уральское"),
    ("Сибирский", "Сибирская", "Сибирское"), ("Волжский", "Волжская", "Волжское"),
    ("Балтийский", "Балтийская", "Балтийское"), ("Невский", "Невская", "Невское"),
    ("Таёжный", "Таёжная", "Таёжное"), ("Приморский", "Приморская", "Приморское"),
    ("Южный", "Южная", "Южное"), ("Восточный", "Восточная", "Восточное"),
    ("Столичный", "Столичная", "Столичное"), ("Первый", "Первая", "Первое"),
)
_RU_NOUNS = (
    ("Ветер", 0), ("Альянс", 0), ("Терминал", 0), ("Проект", 0), ("Сервис", 0), ("Стандарт", 0),
    ("Ресурс", 0), ("Маяк", 0), ("Мост", 0), ("Звезда", 1), ("Линия", 1), ("Гавань", 1), ("Система", 1),
    ("Сеть", 1), ("Партнёрство", 2), ("Облако", 2), ("Решение", 2),
)
_RU_FORMS = ("ООО", "ООО", "ООО", "ООО", "АО", "ПАО")
_RU_MALE = (
    ("Иванов", "Пётр", "Сергеевич"), ("Смирнов", "Алексей", "Петрович"), ("Кузнецов", "Дмитрий", "Иванович"),
    ("Попов", "Сергей", "Александрович"), ("Васильев", "Андрей", "Дмитриевич"),
    ("Соколов", "Михаил", "Андреевич"), ("Михайлов", "Николай", "Викторович"),
    ("Новиков", "Юрий", "Николаевич"), ("Фёдоров", "Илья", "Олегович"), ("Морозов", "Артём", "Юрьевич"),
    ("Волков", "Григорий", "Семёнович"), ("Лебедев", "Фёдор", "Ильич"),
)
_RU_FEMALE = (
    ("Иванова", "Анна", "Сергеевна"), ("Смирнова", "Мария", "Петровна"), ("Кузнецова", "Елена", "Ивановна"),
    ("Попова", "Ольга", "Александровна"), ("Васильева", "Татьяна", "Дмитриевна"),
    ("Соколова", "Наталья", "Андреевна"), ("Михайлова", "Ирина", "Викторовна"),
    ("Новикова", "Светлана", "Николаевна"), ("Фёдорова", "Юлия", "Олеговна"),
    ("Морозова", "Ксения", "Юрьевна"), ("Волкова", "Дарья", "Семёновна"), ("Лебедева", "Алёна", "Ильинична"),
)
# (city, region code for INN/KPP, first three digits of its postcodes)
_RU_CITIES = (
    ("Москва", "77", ("101", "107", "115", "119", "123", "125", "127")),
    ("Санкт-Петербург", "78", ("190", "191", "194", "196", "197", "199")),
    ("Новосибирск", "54", ("630",)), ("Екатеринбург", "66", ("620",)), ("Казань", "16", ("420",)),
    ("Нижний Новгород", "52", ("603",)), ("Самара", "63", ("443",)), ("Ростов-на-Дону", "61", ("344",)),
    ("Краснодар", "23", ("350",)), ("Пермь", "59", ("614",)),
)
_RU_STREETS = (
    "ул. Ленина", "ул. Пушкина", "ул. Гагарина", "пр-т Мира", "ул. Советская", "ул. Садовая",
    "ул. Профсоюзная", "ул. Садовая-Кудринская", "наб. Обводного канала", "ул. Льва Толстого",
    "Ленинградский пр-т", "ул. Большая Покровская",
)

_TR_ASCII = str.maketrans("çğıİöşüâÇĞÖŞÜÂ", "cgiiosuaCGOSUA")
_RU_ASCII = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i",
    "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y",
    "ь": "", "э": "e", "ю": "yu", "я": "ya",
}


def _slug(words: Iterable[str], separator: str) -> str:
    """ASCII e-mail/domain part from Turkish or Russian words."""
    out = []
    for word in words:
        word = word.translate(_TR_ASCII).lower()
        word = "".join(_RU_ASCII.get(ch, ch) for ch in word)
        word = "".join(ch for ch in word if ch.isascii() and ch.isalnum())
        if word:
            out.append(word)
    return separator.join(out)


# --------------------------------------------------------------------------------------------- tariffs

@dataclass(frozen=True)
class Tariff:
    tariff_id: str
    name: str
    price_minor: int
    currency: str
    vat_rate: str
    updated_at: str
    usage_weight: int  # how often customers of that currency pick it


TARIFFS: tuple[Tariff, ...] = (
    Tariff("TR-AUDIO", "Sesli konferans", 60, "TRY", "20", "2025-10-01T09:00:00+00:00", 5),
    Tariff("TR-VIDEO", "Video konferans HD", 150, "TRY", "20", "2025-10-01T09:00:00+00:00", 6),
    Tariff("TR-WEBINAR", "Webinar", 90, "TRY", "20", "2025-10-01T09:00:00+00:00", 2),
    Tariff("TR-INTL", "Uluslararası dial-in erişimi (ihracat, KDV istisna)", 420, "TRY", "0",
           "2025-10-01T09:00:00+00:00", 1),
    Tariff("RU-AUDIO", "Аудиоконференция", 150, "RUB", "22", "2026-01-01T00:00:00+00:00", 5),
    Tariff("RU-VIDEO", "Видеоконференция HD", 350, "RUB", "22", "2026-01-01T00:00:00+00:00", 6),
    Tariff("RU-WEBINAR", "Вебинар", 220, "RUB", "22", "2026-01-01T00:00:00+00:00", 2),
    Tariff("RU-INTL", "Международный дозвон (экспорт, НДС 0%)", 900, "RUB", "0",
           "2026-01-01T00:00:00+00:00", 1),
)
@dataclass(frozen=True)
class TariffPlan:
    """How a tariff rates conference usage (see the ``tariff_plans`` and ``tariff_tiers`` tables)."""

    tariff_id: str
    billing_increment_seconds: int
    included_minutes: int
    minimum_charge_minor: int
    rounding: str
    tiers: tuple[tuple[int, str], ...]  # (from participant-minutes, price per minute in major units)


TARIFF_PLANS: tuple[TariffPlan, ...] = (
    TariffPlan("TR-AUDIO", 60, 0, 0, "half_up", ((0, "0.6000"), (10_000, "0.5000"), (50_000, "0.4200"))),
    TariffPlan("TR-VIDEO", 60, 500, 0, "half_up", ((0, "1.5000"), (20_000, "1.2500"))),
    TariffPlan("TR-WEBINAR", 1, 0, 25_000, "half_even", ((0, "0.9000"),)),
    TariffPlan("TR-INTL", 60, 0, 0, "up", ((0, "4.2000"),)),
    TariffPlan("RU-AUDIO", 6, 1_000, 0, "half_up", ((0, "1.5000"), (10_000, "1.2750"))),
    TariffPlan("RU-VIDEO", 60, 0, 50_000, "half_up", ((0, "3.5000"), (20_000, "2.9750"))),
    TariffPlan("RU-WEBINAR", 1, 0, 0, "down", ((0, "2.2000"),)),
    TariffPlan("RU-INTL", 60, 0, 0, "half_up", ((0, "9.0000"),)),
)

_TARIFFS_BY_CURRENCY = {
    currency: tuple(t for t in TARIFFS if t.currency == currency) for currency in ("TRY", "RUB")
}
_TARIFF_BY_ID = {t.tariff_id: t for t in TARIFFS}
_TARIFF_ORDER = {t.tariff_id: i for i, t in enumerate(TARIFFS)}


def _line_vat_rate(tariff: Tariff, period_year: int) -> str:
    """VAT rate in force for the period: Russia's general rate was 20 % until the end of 2025."""
    if tariff.currency == "RUB" and tariff.vat_rate == "22" and period_year < 2026:
        return "20"
    return tariff.vat_rate


# --------------------------------------------------------------------------------------------- time

def _epoch(day: date) -> int:
    return (day - date(1970, 1, 1)).days * _DAY


def _iso(epoch_seconds: int) -> str:
    """``2026-01-31T10:00:00+00:00``."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


def _month_start(index: int) -> date:
    """First day of the period month ``index``; ``index == 12`` is the month after the period."""
    if index == len(PERIOD_MONTHS):
        return date(2026, 11, 1)
    year, month = PERIOD_MONTHS[index]
    return date(year, month, 1)


_MONTH_STARTS = tuple(_month_start(i) for i in range(len(PERIOD_MONTHS) + 1))
_TR_MONTH_NAMES = ("Ocak", "Şubat", "Mart", "Nisan", "Mayıs", "Haziran", "Temmuz", "Ağustos", "Eylül",
                   "Ekim", "Kasım", "Aralık")
_RU_MONTH_NAMES = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь",
                   "октябрь", "ноябрь", "декабрь")


def _random_day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, (last - first).days))


# --------------------------------------------------------------------------------------------- customers

@dataclass(frozen=True)
class CustomerProfile:
    """A legal entity as billing knows it, plus the hidden traits that drive its usage."""

    index: int
    customer_id: str
    legal_name: str
    country: str
    entity_kind: str
    tax_id: str
    kpp: str | None
    address: str
    city: str
    email: str
    currency: str
    segment: str
    created_at: str
    updated_at: str
    client_since: date  # first contract's signing day
    first_month: int  # first period month with usage
    last_month: int  # last period month with usage (earlier than 11: the customer left)
    usage_weight: int
    tariff_ids: tuple[str, ...]  # with repeats, so a uniform pick follows the customer's habits

    def billing_row(self) -> tuple:
        return (self.customer_id, self.legal_name, self.country, self.entity_kind, self.tax_id, self.kpp,
                self.address, self.city, self.email, self.currency, self.segment, self.created_at,
                self.updated_at)


_SEGMENT_WEIGHT = {"enterprise": 10, "mid-market": 4, "smb": 1}
_SEGMENT_PARTICIPANTS = {"enterprise": (3, 40), "mid-market": (2, 15), "smb": (2, 6)}


def _turkish_address(rng: random.Random) -> tuple[str, str]:
    city, plate, districts = rng.choice(_TR_CITIES)
    district = rng.choice(districts)
    street = rng.choice(_TR_STREETS)
    postcode = f"{plate}{rng.randint(0, 999):03d}"
    return f"{street} No:{rng.randint(1, 180)} D:{rng.randint(1, 24)}, {district}, {postcode} {city}", city


def _russian_address(rng: random.Random, city_entry: tuple[str, str, tuple[str, ...]]) -> str:
    city, _, postcode_prefixes = city_entry
    postcode = f"{rng.choice(postcode_prefixes)}{rng.randint(0, 999):03d}"
    office = rng.choice(("оф.", "пом.", "кв.")) if rng.random() < 0.8 else None
    tail = f", {office} {rng.randint(1, 450)}" if office else ""
    return f"{postcode}, г. {city}, {rng.choice(_RU_STREETS)}, д. {rng.randint(1, 120)}{tail}"


def _address_for(rng: random.Random, country: str, city: str) -> str:
    """A new street address in the same city (used when an entity moves office)."""
    if country == "TR":
        entry = next(e for e in _TR_CITIES if e[0] == city)
        district = rng.choice(entry[2])
        return (f"{rng.choice(_TR_STREETS)} No:{rng.randint(1, 180)} D:{rng.randint(1, 24)}, {district},"
                f" {entry[1]}{rng.randint(0, 999):03d} {city}")
    entry_ru = next(e for e in _RU_CITIES if e[0] == city)
    return _russian_address(rng, entry_ru)


def _customer_tariffs(rng: random.Random, currency: str) -> tuple[str, ...]:
    offered = _TARIFFS_BY_CURRENCY[currency]
    chosen = [t for t in offered if rng.random() < t.usage_weight / 7]
    if not chosen:
        chosen = [offered[1]]  # everybody at least holds video meetings
    # repeat each tariff by its weight so rng.choice over the tuple is a weighted pick
    return tuple(t.tariff_id for t in chosen for _ in range(t.usage_weight))


def build_customers(seed: int = 42, count: int = 300) -> list[CustomerProfile]:
    """The customers of the demo world; billing and the ERP both start from this list."""
    rng = random.Random(f"ledgerlink:{seed}:customers")
    used_tax_ids: set[str] = set()
    customers = []
    for index in range(count):
        country = "TR" if rng.random() < 0.55 else "RU"
        is_person = rng.random() < (0.25 if country == "TR" else 0.3)
        kpp = None
        if country == "TR":
            address, city = _turkish_address(rng)
            if is_person:
                first, last = rng.choice(_TR_FIRST), rng.choice(_TR_LAST)
                legal_name = f"{first} {last}"
                email = f"{_slug([first, last], '.')}{rng.randint(1, 99)}@" + rng.choice(
                    ("gmail.com", "hotmail.com", "yandex.com.tr"))
                make_tax_id = _make_tckn
            else:
                head, sector = rng.choice(_TR_NAME_HEADS), rng.choice(_TR_NAME_SECTORS)
                legal_name = f"{head} {sector} {rng.choice(_TR_FORMS)}"
                email = f"{rng.choice(('muhasebe', 'fatura', 'info'))}@{_slug([head, sector], '')}.com.tr"
                make_tax_id = _make_vkn
            while (tax_id := make_tax_id(rng)) in used_tax_ids:
                pass
        else:
            city_entry = rng.choice(_RU_CITIES)
            city, region = city_entry[0], city_entry[1]
            address = _russian_address(rng, city_entry)
            if is_person:
                last, first, patronymic = rng.choice(_RU_MALE if rng.random() < 0.6 else _RU_FEMALE)
                legal_name = f"ИП {last} {first} {patronymic}"
                email = f"{_slug([first, last], '.')}{rng.randint(1, 99)}@" + rng.choice(
                    ("mail.ru", "yandex.ru", "gmail.com"))
                while (tax_id := _make_person_inn(rng, region)) in used_tax_ids:
                    pass
            else:
                noun, gender = rng.choice(_RU_NOUNS)
                adjective = rng.choice(_RU_ADJECTIVES)[gender]
                legal_name = f"{rng.choice(_RU_FORMS)} «{adjective} {noun}»"
                email = f"{rng.choice(('buh', 'info', 'office'))}@{_slug([adjective, noun], '-')}.ru"
                while (tax_id := _make_company_inn(rng, region)) in used_tax_ids:
                    pass
                # KPP: the tax office of the INN, reason code 01 (registered at its seat), serial 001
                kpp = f"{tax_id[:4]}01001"
        used_tax_ids.add(tax_id)

        if is_person:
            segment = "smb"
        else:
            roll = rng.random()
            segment = "enterprise" if roll < 0.2 else "mid-market" if roll < 0.55 else "smb"

        first_month = 0 if rng.random() < 0.85 else rng.randint(1, len(PERIOD_MONTHS) - 1)
        last_month = len(PERIOD_MONTHS) - 1
        if first_month < last_month - 1 and rng.random() < 0.06:
            last_month = rng.randint(first_month, last_month - 1)
        if first_month == 0:
            client_since = _random_day(rng, date(2022, 1, 10), date(2025, 10, 25))
        else:  # signed during the month before its first calls
            month_first = _MONTH_STARTS[first_month - 1]
            client_since = month_first + timedelta(days=rng.randint(0, 27))
        created = _epoch(client_since) - rng.randint(0, 20) * _DAY + rng.randint(7 * 3600, 18 * 3600)
        updated = created
        if rng.random() < 0.5:
            updated = created + rng.randint(0, _AS_OF_EPOCH - _DAY - created)
        customers.append(CustomerProfile(
            index=index,
            customer_id=f"C{index + 1:06d}",
            legal_name=legal_name,
            country=country,
            entity_kind="person" if is_person else "company",
            tax_id=tax_id,
            kpp=kpp,
            address=address,
            city=city,
            email=email,
            currency="TRY" if country == "TR" else "RUB",
            segment=segment,
            created_at=_iso(created),
            updated_at=_iso(updated),
            client_since=client_since,
            first_month=first_month,
            last_month=last_month,
            usage_weight=_SEGMENT_WEIGHT[segment],
            tariff_ids=_customer_tariffs(rng, "TRY" if country == "TR" else "RUB"),
        ))
    return customers


# --------------------------------------------------------------------------------------------- contracts

@dataclass
class _Contract:
    contract_id: str
    customer: CustomerProfile
    number: str
    signed_on: date
    status: str
    updated_at: str
    first_month: int
    last_month: int
    # tariff_id -> [(first period month, price_minor, valid_from)], ascending
    rates: dict[str, list[tuple[int, int, date]]] = field(default_factory=dict)

    def row(self) -> tuple:
        return (self.contract_id, self.customer.customer_id, self.number, self.signed_on.isoformat(),
                self.customer.currency, self.status, self.updated_at)

    def unit_price(self, tariff: Tariff, month: int) -> int:
        price = tariff.price_minor
        for from_month, rate_price, _ in self.rates.get(tariff.tariff_id, ()):
            if from_month <= month:
                price = rate_price
        return price


def _build_contracts(seed: int, customers: Sequence[CustomerProfile]) -> list[list[_Contract]]:
    """Each customer's contracts, oldest first; a new contract always starts on the first of a month."""
    rng = random.Random(f"ledgerlink:{seed}:contracts")
    serial = {"TR": 0, "RU": 0}
    per_customer: list[list[_Contract]] = []
    last_period_month = len(PERIOD_MONTHS) - 1
    for customer in customers:
        spans = [(customer.first_month, customer.last_month, customer.client_since)]
        if customer.last_month - customer.first_month >= 2 and rng.random() < 0.1:
            switch = rng.randint(customer.first_month + 1, customer.last_month)
            renewal_signed = _MONTH_STARTS[switch - 1] + timedelta(days=rng.randint(5, 25))
            spans = [(customer.first_month, switch - 1, customer.client_since),
                     (switch, customer.last_month, renewal_signed)]
        contracts = []
        for position, (first, last, signed_on) in enumerate(spans):
            serial[customer.country] += 1
            number = (f"SZL-{signed_on.year}-{serial['TR']:05d}" if customer.country == "TR"
                      else f"Д-{serial['RU']:05d}/{signed_on.year % 100:02d}")
            still_running = position == len(spans) - 1 and last == last_period_month
            if still_running:
                updated = _epoch(signed_on) + rng.randint(8 * 3600, 19 * 3600)
            else:  # closed on the first of the month after its last usage month
                updated = _epoch(_MONTH_STARTS[last + 1]) + rng.randint(8 * 3600, 19 * 3600)
            contract = _Contract(
                contract_id=f"K{sum(serial.values()):06d}",
                customer=customer,
                number=number,
                signed_on=signed_on,
                status="active" if still_running else "closed",
                updated_at=_iso(updated),
                first_month=first,
                last_month=last,
            )
            if rng.random() < 0.35:  # a negotiated price, sometimes renegotiated during the period
                offered = sorted(set(customer.tariff_ids), key=_TARIFF_ORDER.__getitem__)
                for tariff_id in rng.sample(offered, rng.randint(1, min(2, len(offered)))):
                    list_price = _TARIFF_BY_ID[tariff_id].price_minor
                    price = round_half_up_div(list_price * rng.choice((75, 80, 85, 90)), 100)
                    rates = [(first, price, signed_on)]
                    if last > first and rng.random() < 0.3:
                        change_month = rng.randint(first + 1, last)
                        new_price = round_half_up_div(price * rng.choice((95, 105, 110)), 100)
                        rates.append((change_month, new_price, _MONTH_STARTS[change_month]))
                    contract.rates[tariff_id] = rates
            contracts.append(contract)
        per_customer.append(contracts)
    return per_customer


def _contract_plan_row(contract: _Contract) -> tuple:
    """The contract's conference tariff: the one its customer uses most (ties: the tariff table's order), from
    its first usage month to the month after its last (open while the contract runs)."""
    habits = contract.customer.tariff_ids
    tariff_id = min(set(habits), key=lambda t: (-habits.count(t), _TARIFF_ORDER[t]))
    valid_to = None if contract.status == "active" else _MONTH_STARTS[contract.last_month + 1].isoformat()
    return (contract.contract_id, tariff_id, _MONTH_STARTS[contract.first_month].isoformat(), valid_to)


def _contract_for(contracts: Sequence[_Contract], month: int) -> _Contract:
    for contract in contracts:
        if contract.first_month <= month <= contract.last_month:
            return contract
    raise LookupError(f"no contract covers period month {month}")


# --------------------------------------------------------------------------------------------- databases

class _Database:
    """The few operations the generator needs, over SQLite (``?`` placeholders) or PostgreSQL."""

    def recreate(self, tables: Sequence[Table]) -> None:
        for table in reversed(tables):
            self.execute(f"DROP TABLE IF EXISTS {table.name}")
        for table in tables:
            self.execute(table.create_sql())

    def create_indexes(self, tables: Sequence[Table]) -> None:
        for table in tables:
            for sql in table.index_sql():
                self.execute(sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def insert_rows(self, table: Table, rows: Sequence[tuple]) -> None:
        raise NotImplementedError

    def iterate(self, sql: str) -> Iterator[tuple]:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "_Database":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class _SqliteDatabase(_Database):
    def __init__(self, path: Path, bulk: bool, create: bool):
        if not create and not path.is_file():
            raise FileNotFoundError(f"no SQLite database at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the driver leaves transactions to us; a run is one BEGIN .. COMMIT
        self._connection = sqlite3.connect(path, isolation_level=None)
        # WAL persists in the file and lets stand-ins read while a mutation writes
        self._connection.execute("PRAGMA journal_mode=WAL")
        if bulk:  # a crash mid-generation just means generating again
            self._connection.execute("PRAGMA synchronous=OFF")
            self._connection.execute("PRAGMA temp_store=MEMORY")
            self._connection.execute("PRAGMA cache_size=-131072")
        self._connection.execute("BEGIN")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._connection.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, rows)

    def insert_rows(self, table: Table, rows: Sequence[tuple]) -> None:
        placeholders = ", ".join("?" * len(table.columns))
        self._connection.executemany(f"INSERT INTO {table.name} VALUES ({placeholders})", rows)

    def iterate(self, sql: str) -> Iterator[tuple]:
        cursor = self._connection.execute(sql)
        while batch := cursor.fetchmany(10_000):
            yield from batch

    def commit(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.execute("BEGIN")

    def close(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")
        self._connection.close()


class _PostgresDatabase(_Database):
    def __init__(self, dsn: str):
        import psycopg  # only PostgreSQL targets need the driver

        self._connection = psycopg.connect(dsn)
        self._connection.execute("SET synchronous_commit = off")
        self._connection.execute("SET maintenance_work_mem = '256MB'")  # index builds after the load
        self._cursor_serial = 0

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")  # our statements carry no literal '?' or '%'

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self._connection.execute(self._sql(sql), params or None)
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(self._sql(sql), rows)

    def insert_rows(self, table: Table, rows: Sequence[tuple]) -> None:
        with self._connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({', '.join(table.column_names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def iterate(self, sql: str) -> Iterator[tuple]:
        self._cursor_serial += 1  # a server-side cursor keeps memory flat on big tables
        with self._connection.cursor(name=f"ledgerlink_scan_{self._cursor_serial}") as cursor:
            cursor.itersize = 10_000
            cursor.execute(sql)
            yield from cursor

    def create_indexes(self, tables: Sequence[Table]) -> None:
        super().create_indexes(tables)
        for table in tables:
            self.execute(f"ANALYZE {table.name}")

    def commit(self) -> None:
        self._connection.commit()

    def close(self) -> None:
        self._connection.close()


def _open(target: Any, bulk: bool = False, create: bool = False) -> _Database:
    """Open a path, ``sqlite:///path``, ``postgresql://`` URL or SQLAlchemy ``URL`` object.

    ``bulk`` trades durability for speed (generation); ``create`` allows a new SQLite file.
    """
    if hasattr(target, "render_as_string"):  # a SQLAlchemy URL; rendering keeps the password
        target = target.render_as_string(hide_password=False)
    if isinstance(target, Path):
        return _SqliteDatabase(target, bulk, create)
    if not isinstance(target, str):
        raise TypeError(f"expected a path or database URL, got {type(target).__name__}")
    scheme, _, rest = target.partition("://")
    if not rest:
        return _SqliteDatabase(Path(target), bulk, create)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        return _PostgresDatabase("postgresql://" + rest)
    if scheme in ("sqlite", "sqlite+pysqlite"):
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///relative, sqlite:////absolute
        return _SqliteDatabase(Path(path), bulk, create)
    raise ValueError(f"unsupported database URL scheme {scheme!r}")


class _BatchWriter:
    """Buffers rows per table and flushes them in batches; counts what it wrote."""

    def __init__(self, database: _Database, tables: Sequence[Table], batch_rows: int = BATCH_ROWS):
        self._database = database
        self._tables = {table.name: table for table in tables}
        self._buffers: dict[str, list[tuple]] = {table.name: [] for table in tables}
        self._batch_rows = batch_rows
        self.counts: dict[str, int] = {table.name: 0 for table in tables}

    def add(self, table_name: str, row: tuple) -> None:
        buffer = self._buffers[table_name]
        buffer.append(row)
        if len(buffer) >= self._batch_rows:
            self.flush(table_name)

    def extend(self, table_name: str, rows: Iterable[tuple]) -> None:
        for row in rows:
            self.add(table_name, row)

    def flush(self, table_name: str | None = None) -> None:
        for name in [table_name] if table_name else list(self._buffers):
            buffer = self._buffers[name]
            if buffer:
                self._database.insert_rows(self._tables[name], buffer)
                self.counts[name] += len(buffer)
                buffer.clear()


# --------------------------------------------------------------------------------------------- billing

def _split_exactly(total: int, weights: Sequence[float]) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights`` that add up to ``total`` exactly."""
    weight_sum = sum(weights)
    shares, cumulative, allotted = [], 0.0, 0
    for weight in weights:
        cumulative += weight
        upto = int(total * cumulative / weight_sum) if weight_sum else 0
        shares.append(upto - allotted)
        allotted = upto
    shares[-1] += total - allotted  # float rounding never loses a row
    return shares


def _active(customers: Sequence[CustomerProfile], month: int) -> list[CustomerProfile]:
    return [c for c in customers if c.first_month <= month <= c.last_month]


def _generate_usage(
    writer: _BatchWriter,
    rng: random.Random,
    customers: Sequence[CustomerProfile],
    contracts: Sequence[Sequence[_Contract]],
    usage_rows: int,
    aggregate: dict[tuple[int, int, str], int] | None,
) -> None:
    """Stream the calls, in time order; optionally sum participant-seconds per customer, month, tariff."""
    months = range(len(PERIOD_MONTHS))
    active_by_month = [_active(customers, month) for month in months]
    rows_by_month = _split_exactly(usage_rows, [sum(c.usage_weight for c in active) for active in
                                                active_by_month])
    usage_id = 0
    for month, active in zip(months, active_by_month):
        rows = rows_by_month[month]
        if not rows or not active:
            continue
        cumulative_weights, running = [], 0
        for customer in active:
            running += customer.usage_weight
            cumulative_weights.append(running)
        month_start = _MONTH_STARTS[month]
        month_seconds = (_MONTH_STARTS[month + 1] - month_start).days * _DAY
        prefix = f"{month_start.year:04d}-{month_start.month:02d}-"
        # per-customer facts looked up once per month, not once per call (this loop runs millions of times)
        callers = []
        for customer in active:
            low, high = _SEGMENT_PARTICIPANTS[customer.segment]
            callers.append((customer.index, customer.customer_id,
                            _contract_for(contracts[customer.index], month).contract_id,
                            customer.tariff_ids, len(customer.tariff_ids), low, high - low + 1))
        uniform, gauss, random_bits, add = rng.random, rng.gauss, rng.getrandbits, writer.add
        for position in range(rows):
            index, customer_id, contract_id, tariff_ids, tariff_count, low, span = callers[
                bisect.bisect_right(cumulative_weights, uniform() * running)]
            tariff_id = tariff_ids[int(uniform() * tariff_count)]
            # stratified start times: sorted within the month without holding the month in memory
            offset = int((position + uniform()) * month_seconds / rows)
            day, second = divmod(offset, _DAY)
            hour, second = divmod(second, 3600)
            minute, second = divmod(second, 60)
            duration = min(max(int(math.exp(7.2 + 0.7 * gauss())), 30), 4 * 3600)  # median ≈ 22 min
            participants = low + int(uniform() * span)
            call = "%032x" % random_bits(128)
            usage_id += 1
            add("usage", (
                usage_id, customer_id, contract_id, tariff_id,
                # a version-4 UUID: version nibble 4, variant bits 10
                f"{call[:8]}-{call[8:12]}-4{call[13:16]}-{'89ab'[int(call[16], 16) & 3]}{call[17:20]}-{call[20:]}",
                f"{prefix}{day + 1:02d}T{hour:02d}:{minute:02d}:{second:02d}+00:00",
                duration, participants, None,
            ))
            if aggregate is not None:
                key = (index, month, tariff_id)
                aggregate[key] = aggregate.get(key, 0) + duration * participants


@dataclass
class _InvoiceNumbers:
    """GİB-style numbers for Turkey (series, year, 9-digit sequence restarting yearly); ``БЛ-`` for Russia."""

    tr_series: str = "LLK"
    tr_next: dict[int, int] = field(default_factory=dict)
    ru_next: int = 0
    invoice_serial: int = 0

    def next(self, country: str, issue_date: date) -> tuple[str, str]:
        self.invoice_serial += 1
        invoice_id = f"IN{self.invoice_serial:08d}"
        if country == "TR":
            sequence = self.tr_next.get(issue_date.year, 0) + 1
            self.tr_next[issue_date.year] = sequence
            return invoice_id, f"{self.tr_series}{issue_date.year}{sequence:09d}"
        self.ru_next += 1
        return invoice_id, f"БЛ-{self.ru_next:06d}"


class _InvoiceEmitter:
    """Turns (customer, month, line specs) into an invoice, its lines and its payments."""

    def __init__(self, writer: _BatchWriter, seed: int):
        self._writer = writer
        self._rng = random.Random(f"ledgerlink:{seed}:invoices")
        self._numbers = _InvoiceNumbers()
        self._payment_serial = 0
        self._last_paid_day = AS_OF.date() - timedelta(days=1)

    def emit(self, customer: CustomerProfile, contract: _Contract, month: int,
             lines: Sequence[tuple[Tariff, int, str]]) -> None:
        """``lines``: (tariff, participant-minutes in tenths, description) in line order."""
        rng = self._rng
        issue_date = _MONTH_STARTS[month + 1]
        invoice_id, number = self._numbers.next(customer.country, issue_date)
        issued = _epoch(issue_date) + rng.randint(2 * 3600, 5 * 3600)
        issued_at = _iso(issued)
        period_year = _MONTH_STARTS[month].year
        currency = customer.currency
        net_total = vat_total = 0
        add_line = self._writer.add
        for line_no, (tariff, tenths, description) in enumerate(lines, 1):
            unit_price = contract.unit_price(tariff, month)
            net = round_half_up_div(tenths * unit_price, 10)
            vat_rate = _line_vat_rate(tariff, period_year)
            vat = round_half_up_div(net * int(vat_rate), 100)
            net_total += net
            vat_total += vat
            add_line("invoice_lines", (
                f"{invoice_id}-{line_no:04d}", invoice_id, line_no, tariff.tariff_id, description,
                _quantity_text(tenths), unit_price, net, vat_rate, vat, net + vat, currency, issued_at,
            ))
        gross_total = net_total + vat_total

        status, updated = "issued", issued
        roll = rng.random()
        if roll < 0.01:
            status, updated = "cancelled", issued + rng.randint(1, 4) * _DAY + rng.randint(0, 3600)
        elif gross_total == 0:
            status = "paid"
        elif roll >= 0.04:  # 3 % never pay; the rest pay in full, some in two parts
            due = issue_date + timedelta(days=rng.randint(2, 40))
            parts = [gross_total]
            if roll < 0.12:
                first_part = gross_total * rng.randint(30, 70) // 100
                parts = [first_part, gross_total - first_part]
            paid_total, pay_day = 0, due
            for part in parts:
                if pay_day > self._last_paid_day:
                    break
                self._payment_serial += 1
                paid_at = _epoch(pay_day) + rng.randint(9 * 3600, 17 * 3600)
                reference = (f"EFT {rng.randrange(10 ** 9, 10 ** 10)}" if customer.country == "TR"
                             else f"п/п № {rng.randint(1, 99999)} от {pay_day:%d.%m.%Y}")
                self._writer.add("payments", (
                    f"PM{self._payment_serial:08d}", customer.customer_id, invoice_id, pay_day.isoformat(),
                    part, currency, reference, _iso(paid_at),
                ))
                paid_total += part
                updated = max(updated, paid_at)
                pay_day += timedelta(days=rng.randint(5, 30))
            if paid_total == gross_total:
                status = "paid"
        self._writer.add("invoices", (
            invoice_id, customer.customer_id, contract.contract_id, number, issue_date.isoformat(),
            _MONTH_STARTS[month].isoformat(), (issue_date - timedelta(days=1)).isoformat(), currency,
            net_total, vat_total, gross_total, status, _iso(updated), None,
        ))


def _period_label(customer: CustomerProfile, month: int) -> str:
    start = _MONTH_STARTS[month]
    if customer.country == "TR":
        return f"{_TR_MONTH_NAMES[start.month - 1]} {start.year} dönemi"
    return f"за {_RU_MONTH_NAMES[start.month - 1]} {start.year} г."


def _invoices_from_usage(emitter: _InvoiceEmitter, customers: Sequence[CustomerProfile],
                         contracts: Sequence[Sequence[_Contract]],
                         aggregate: dict[tuple[int, int, str], int]) -> None:
    """One invoice per customer and month with calls; one line per tariff used."""
    by_slot: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for (customer_index, month, tariff_id), participant_seconds in aggregate.items():
        by_slot.setdefault((month, customer_index), []).append((tariff_id, participant_seconds))
    for month, customer_index in sorted(by_slot):
        customer = customers[customer_index]
        label = _period_label(customer, month)
        lines = []
        for tariff_id, participant_seconds in sorted(by_slot[(month, customer_index)],
                                                     key=lambda item: _TARIFF_ORDER[item[0]]):
            tariff = _TARIFF_BY_ID[tariff_id]
            # participant-seconds -> participant-minutes in tenths, half-up (seconds / 6)
            lines.append((tariff, round_half_up_div(participant_seconds, 6), f"{tariff.name}, {label}"))
        emitter.emit(customer, _contract_for(contracts[customer_index], month), month, lines)


def _invoices_direct(emitter: _InvoiceEmitter, seed: int, customers: Sequence[CustomerProfile],
                     contracts: Sequence[Sequence[_Contract]], line_count: int) -> None:
    """Exactly ``line_count`` itemised lines (one per conference), spread over customer-months.

    Used at benchmark scale, where the lines are decoupled from the usage table but every invoice still
    adds up.
    """
    rng = random.Random(f"ledgerlink:{seed}:invoice-lines")
    slots = [(month, customer) for month in range(len(PERIOD_MONTHS)) for customer in _active(customers, month)]
    if not slots:
        return
    weights = [customer.usage_weight * (0.5 + rng.random()) for _, customer in slots]
    for (month, customer), line_total in zip(slots, _split_exactly(line_count, weights)):
        if not line_total:
            continue
        start = _MONTH_STARTS[month]
        days_in_month = (_MONTH_STARTS[month + 1] - start).days
        suffix = f".{start.month:02d}.{start.year}"
        lines = []
        for _ in range(line_total):
            tariff = _TARIFF_BY_ID[rng.choice(customer.tariff_ids)]
            tenths = int(rng.lognormvariate(6.0, 1.2)) + 1  # median ≈ 40 participant-minutes
            lines.append((tariff, tenths, f"{tariff.name}, {rng.randint(1, days_in_month):02d}{suffix}"))
        emitter.emit(customer, _contract_for(contracts[customer.index], month), month, lines)


def generate_billing(
    target: Any,
    seed: int = 42,
    customers: int = 300,
    usage_rows: int | None = None,
    invoice_lines: int | None = None,
) -> dict[str, int]:
    """Create (or recreate) the billing tables in ``target`` and fill them; returns row counts per table.

    ``usage_rows`` defaults to 20 calls per customer. With ``invoice_lines`` unset, invoices are rated
    from the usage (one line per tariff per customer-month); with it set, exactly that many itemised
    lines are written instead, independent of the usage table.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if usage_rows is None:
        usage_rows = USAGE_ROWS_PER_CUSTOMER * customers
    if usage_rows < 0 or (invoice_lines is not None and invoice_lines < 0):
        raise ValueError("row counts must not be negative")
    profiles = build_customers(seed, customers)
    contracts = _build_contracts(seed, profiles)
    with _open(target, bulk=True, create=True) as database:
        database.recreate(BILLING_TABLES)
        writer = _BatchWriter(database, BILLING_TABLES)
        writer.extend("customers", (c.billing_row() for c in profiles))
        writer.extend("tariffs", ((t.tariff_id, t.name, "minute", t.price_minor, t.currency, t.vat_rate,
                                   t.updated_at) for t in TARIFFS))
        for plan in TARIFF_PLANS:
            writer.add("tariff_plans", (plan.tariff_id, plan.billing_increment_seconds, plan.included_minutes,
                                        plan.minimum_charge_minor, plan.rounding, _TARIFF_BY_ID[plan.tariff_id].updated_at))
            writer.extend("tariff_tiers", ((plan.tariff_id, start, price) for start, price in plan.tiers))
        for customer_contracts in contracts:
            for contract in customer_contracts:
                writer.add("contracts", contract.row())
                writer.add("contract_plans", _contract_plan_row(contract))
                for tariff_id, rates in sorted(contract.rates.items()):
                    for _, price, valid_from in rates:
                        writer.add("contract_rates",
                                   (contract.contract_id, tariff_id, price, valid_from.isoformat()))
        aggregate: dict[tuple[int, int, str], int] | None = {} if invoice_lines is None else None
        _generate_usage(writer, random.Random(f"ledgerlink:{seed}:usage"), profiles, contracts, usage_rows,
                        aggregate)
        emitter = _InvoiceEmitter(writer, seed)
        if aggregate is not None:
            _invoices_from_usage(emitter, profiles, contracts, aggregate)
        else:
            _invoices_direct(emitter, seed, profiles, contracts, invoice_lines or 0)
        writer.flush()
        database.create_indexes(BILLING_TABLES)
        database.commit()
    return writer.counts


def generate_billing_postgres(dsn: str, seed: int = 42, customers: int = 300, usage_rows: int | None = None,
                              invoice_lines: int | None = None) -> dict[str, int]:
    """:func:`generate_billing` into PostgreSQL (``postgresql://`` or ``postgresql+psycopg://``)."""
    if not dsn.startswith(("postgresql://", "postgres://", "postgresql+")):
        raise ValueError("expected a postgresql:// URL")
    return generate_billing(dsn, seed=seed, customers=customers, usage_rows=usage_rows,
                            invoice_lines=invoice_lines)


# --------------------------------------------------------------------------------------------- mutation

def _sample_positions(rng: random.Random, population: int, count: int) -> list[int]:
    return rng.sample(range(population), min(count, population))


def _pick_rows(database: _Database, sql: str, positions: Iterable[int]) -> dict[int, tuple]:
    """Rows at the given positions of an ordered scan, streamed so memory stays flat."""
    wanted = sorted(set(positions))
    picked: dict[int, tuple] = {}
    if not wanted:
        return picked
    for position, row in enumerate(database.iterate(sql)):
        if position == wanted[len(picked)]:
            picked[position] = row
            if len(picked) == len(wanted):
                break
    return picked


def mutate_billing(
    target: Any,
    seed: int = 42,
    changed_fraction: float = 0.01,
    deleted: int = 0,
    added: int = 0,
    as_of: datetime = MUTATION_INSTANT,
) -> dict[str, dict[str, list[str]]]:
    """Change billing the way a day of operations would, deterministically; returns the keys touched.

    * ``changed_fraction`` of customers get a new e-mail, and of invoice lines a corrected quantity;
    * ``deleted`` invoice lines are removed (never an invoice's last line);
    * ``added`` invoice lines are appended to existing invoices;
    * every invoice whose lines moved gets its totals re-summed, and a paid one whose payments no longer
      cover it goes back to ``issued``.

    Every changed row gets ``updated_at = as_of``. Returns
    ``{table: {"changed": [...], "deleted": [...], "added": [...]}}`` for customers, invoice_lines and
    invoices.
    """
    if not 0 <= changed_fraction <= 1:
        raise ValueError("changed_fraction must be between 0 and 1")
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    stamp = as_of.astimezone(UTC).isoformat()
    rng = random.Random(f"ledgerlink:{seed}:mutation:{stamp}")
    touched: dict[str, dict[str, list[str]]] = {
        name: {"changed": [], "deleted": [], "added": []} for name in ("customers", "invoice_lines", "invoices")
    }
    with _open(target) as database:
        customer_count = database.execute("SELECT COUNT(*) FROM customers")[0][0]
        picked = _pick_rows(database, "SELECT customer_id, email FROM customers ORDER BY customer_id",
                            _sample_positions(rng, customer_count, round(customer_count * changed_fraction)))
        new_emails = []
        for customer_id, email in picked.values():
            local, _, domain = email.partition("@")
            new_emails.append((f"{local}.{rng.randint(100, 999)}@{domain}", stamp, customer_id))
            touched["customers"]["changed"].append(customer_id)
        database.executemany("UPDATE customers SET email = ?, updated_at = ? WHERE customer_id = ?",
                             new_emails)

        line_count = database.execute("SELECT COUNT(*) FROM invoice_lines")[0][0]
        change_count = round(line_count * changed_fraction)
        positions = _sample_positions(rng, line_count, change_count + deleted)
        change_positions = set(positions[:change_count])
        picked = _pick_rows(
            database,
            "SELECT line_id, invoice_id, quantity, unit_price_minor, vat_rate FROM invoice_lines"
            " ORDER BY line_id",
            positions,
        )
        affected_invoices: set[str] = set()
        corrections, removals = [], []
        for position, (line_id, invoice_id, quantity, unit_price, vat_rate) in picked.items():
            if position in change_positions:
                whole, _, tenth = quantity.partition(".")
                tenths = int(whole) * 10 + int(tenth or 0) + rng.randint(1, 50)
                net = round_half_up_div(tenths * unit_price, 10)
                vat = _vat_minor(net, vat_rate)
                corrections.append((_quantity_text(tenths), net, vat, net + vat, stamp, line_id))
                touched["invoice_lines"]["changed"].append(line_id)
                affected_invoices.add(invoice_id)
            else:
                removals.append((line_id, invoice_id))
        database.executemany(
            "UPDATE invoice_lines SET quantity = ?, net_minor = ?, vat_minor = ?, gross_minor = ?,"
            " updated_at = ? WHERE line_id = ?",
            corrections,
        )
        remaining: dict[str, int] = {}
        for line_id, invoice_id in removals:
            if invoice_id not in remaining:
                remaining[invoice_id] = database.execute(
                    "SELECT COUNT(*) FROM invoice_lines WHERE invoice_id = ?", (invoice_id,))[0][0]
            if remaining[invoice_id] > 1:  # an invoice without lines is not a thing billing produces
                remaining[invoice_id] -= 1
                database.execute("DELETE FROM invoice_lines WHERE line_id = ?", (line_id,))
                touched["invoice_lines"]["deleted"].append(line_id)
                affected_invoices.add(invoice_id)

        invoice_count = database.execute("SELECT COUNT(*) FROM invoices")[0][0]
        invoice_positions = [rng.randrange(invoice_count) for _ in range(added)] if invoice_count else []
        invoices_at = _pick_rows(database, "SELECT invoice_id FROM invoices ORDER BY invoice_id",
                                 invoice_positions)
        targets = [invoices_at[position][0] for position in invoice_positions]
        next_line_no: dict[str, int] = {}
        new_lines = []
        for invoice_id in targets:
            if invoice_id not in next_line_no:
                next_line_no[invoice_id] = database.execute(
                    "SELECT COALESCE(MAX(line_no), 0) FROM invoice_lines WHERE invoice_id = ?", (invoice_id,)
                )[0][0]
            template = database.execute(
                "SELECT tariff_id, unit_price_minor, vat_rate, currency FROM invoice_lines"
                " WHERE invoice_id = ? ORDER BY line_no LIMIT 1", (invoice_id,))
            if not template:
                continue
            tariff_id, unit_price, vat_rate, currency = template[0]
            next_line_no[invoice_id] += 1
            line_no = next_line_no[invoice_id]
            tenths = rng.randint(10, 3000)
            net = round_half_up_div(tenths * unit_price, 10)
            vat = _vat_minor(net, vat_rate)
            description = (f"{_TARIFF_BY_ID[tariff_id].name}, ek kullanım" if currency == "TRY"
                           else f"{_TARIFF_BY_ID[tariff_id].name}, доначисление")
            line_id = f"{invoice_id}-{line_no:04d}"
            new_lines.append((line_id, invoice_id, line_no, tariff_id, description, _quantity_text(tenths),
                              unit_price, net, vat_rate, vat, net + vat, currency, stamp))
            touched["invoice_lines"]["added"].append(line_id)
            affected_invoices.add(invoice_id)
        invoice_lines_table = next(t for t in BILLING_TABLES if t.name == "invoice_lines")
        if new_lines:
            database.insert_rows(invoice_lines_table, new_lines)

        invoice_ids = sorted(affected_invoices)
        database.executemany(
            "UPDATE invoices SET"
            " net_minor = (SELECT COALESCE(SUM(l.net_minor), 0) FROM invoice_lines l"
            "              WHERE l.invoice_id = invoices.invoice_id),"
            " vat_minor = (SELECT COALESCE(SUM(l.vat_minor), 0) FROM invoice_lines l"
            "              WHERE l.invoice_id = invoices.invoice_id),"
            " gross_minor = (SELECT COALESCE(SUM(l.gross_minor), 0) FROM invoice_lines l"
            "                WHERE l.invoice_id = invoices.invoice_id),"
            " updated_at = ?"
            " WHERE invoice_id = ?",
            [(stamp, invoice_id) for invoice_id in invoice_ids],
        )
        database.executemany(
            "UPDATE invoices SET status = 'issued'"
            " WHERE invoice_id = ? AND status = 'paid' AND gross_minor <>"
            " (SELECT COALESCE(SUM(p.amount_minor), 0) FROM payments p WHERE p.invoice_id = invoices.invoice_id)",
            [(invoice_id,) for invoice_id in invoice_ids],
        )
        touched["invoices"]["changed"] = invoice_ids
        database.commit()
    for table in touched.values():
        for keys in table.values():
            keys.sort()
    return touched


# --------------------------------------------------------------------------------------------- ERP

@dataclass(frozen=True)
class _Product:
    code: str
    name_tr: str
    name_ru: str
    unit: str
    price_try: int
    price_rub: int
    is_stocked: bool
    fractional: bool = False


_PRODUCTS = (
    _Product("CAM-4K", "4K konferans kamerası", "Конференц-камера 4K", "pcs", 2_450_000, 8_990_000, True),
    _Product("CAM-HD", "Full HD konferans kamerası", "Конференц-камера Full HD", "pcs", 1_190_000, 4_290_000,
             True),
    _Product("SPK-USB", "USB konferans hoparlörü", "Спикерфон USB", "pcs", 640_000, 2_190_000, True),
    _Product("MIC-CEIL", "Tavan mikrofonu", "Потолочный микрофон", "pcs", 1_560_000, 5_490_000, True),
    _Product("HUB-ROOM", "Toplantı odası kiti", "Комплект для переговорной", "pcs", 8_900_000, 31_900_000,
             True),
    _Product("LIC-50", "Video konferans lisansı, 50 port (aylık)", "Лицензия ВКС, 50 портов (месяц)",
             "month", 950_000, 3_200_000, False),
    _Product("LIC-200", "Video konferans lisansı, 200 port (aylık)", "Лицензия ВКС, 200 портов (месяц)",
             "month", 3_400_000, 11_500_000, False),
    _Product("SUP-PREM", "Premium destek (aylık)", "Премиальная поддержка (месяц)", "month", 420_000,
             1_450_000, False),
    _Product("SVC-HOUR", "Kurulum ve eğitim (saat)", "Монтаж и обучение (час)", "hour", 180_000, 650_000,
             False, fractional=True),
)
_ORDER_STATUSES_OLD = ("invoiced", "invoiced", "invoiced", "shipped")
_ORDER_STATUSES_RECENT = ("draft", "confirmed", "confirmed", "shipped")


def generate_erp(target: Any, seed: int = 42, customers: int = 300) -> dict[str, int]:
    """Create (or recreate) the ERP tables in ``target`` and fill them; returns row counts per table.

    The ERP holds the same legal entities as billing (it is their master); for about 4 % of them it
    already knows a newer address than billing, with a later ``updated_at``, as after an office move.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    rng = random.Random(f"ledgerlink:{seed}:erp")
    profiles = build_customers(seed, customers)
    with _open(target, bulk=True, create=True) as database:
        database.recreate(ERP_TABLES)
        writer = _BatchWriter(database, ERP_TABLES)
        for customer in profiles:
            address, updated = customer.address, customer.updated_at
            if rng.random() < 0.04:
                address = _address_for(rng, customer.country, customer.city)
                billing_updated = int((datetime.fromisoformat(customer.updated_at) - _EPOCH).total_seconds())
                updated = _iso(billing_updated + 1 + rng.randint(0, max(0, _AS_OF_EPOCH - 2 - billing_updated)))
            writer.add("erp_customers", (
                f"E{100000 + customer.index + 1}", customer.customer_id, customer.legal_name, customer.country,
                customer.tax_id, customer.kpp, address, customer.city, updated,
            ))
        for product in _PRODUCTS:
            for currency, name, price, vat_rate in (("TRY", product.name_tr, product.price_try, "20"),
                                                    ("RUB", product.name_ru, product.price_rub, "22")):
                stock = rng.randint(0, 400) if product.is_stocked else 0
                updated = _iso(_epoch(date(2026, 1, 1)) + rng.randint(0, _AS_OF_EPOCH - _epoch(date(2026, 1, 1))))
                writer.add("products", (f"{product.code}-{currency[:2]}", name, product.unit, price, currency,
                                        vat_rate, stock, updated))
        period_start, period_end = _MONTH_STARTS[0], AS_OF.date() - timedelta(days=1)
        order_serial = 0
        for customer in profiles:
            for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3))):
                order_serial += 1
                order_id = f"SO-{order_serial:06d}"
                order_date = _random_day(rng, max(period_start, customer.client_since), period_end)
                age_days = (AS_OF.date() - order_date).days
                status = rng.choice(_ORDER_STATUSES_OLD if age_days > 45 else _ORDER_STATUSES_RECENT)
                if rng.random() < 0.03:
                    status = "cancelled"
                total = 0
                for line_no, product in enumerate(rng.sample(_PRODUCTS, rng.randint(1, 4)), 1):
                    price = product.price_try if customer.currency == "TRY" else product.price_rub
                    if product.fractional:
                        tenths = rng.randint(1, 16) * 5  # whole and half hours
                        quantity = _quantity_text(tenths)
                        net = round_half_up_div(tenths * price, 10)
                    else:
                        count = rng.choice((1, 2, 3, 5, 10)) if product.is_stocked else rng.choice((1, 6, 12))
                        quantity = str(count)
                        net = count * price
                    total += net
                    writer.add("sales_order_lines", (order_id, line_no, f"{product.code}-{customer.currency[:2]}",
                                                     quantity, price, net))
                updated = _epoch(order_date) + rng.randint(8 * 3600, 19 * 3600) + min(age_days, 10) * _DAY
                writer.add("sales_orders", (
                    order_id, f"E{100000 + customer.index + 1}",
                    f"DEAL-{rng.randint(10000, 99999)}" if rng.random() < 0.7 else None,
                    order_date.isoformat(), customer.currency, total, status, _iso(min(updated, _AS_OF_EPOCH - 1)),
                ))
        writer.flush()
        database.create_indexes(ERP_TABLES)
        database.commit()
    return writer.counts


# --------------------------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sandbox.generator --billing PATH --erp PATH [--seed 42] [--customers 300] ...``."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.generator", description=__doc__.splitlines()[0])
    parser.add_argument("--billing", help="billing database: SQLite path or postgresql:// URL")
    parser.add_argument("--erp", help="ERP database: SQLite path or postgresql:// URL")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--usage-rows", type=int, default=None, help="calls to generate (default 20 per customer)")
    parser.add_argument("--invoice-lines", type=int, default=None,
                        help="write exactly this many itemised invoice lines, decoupled from usage")
    args = parser.parse_args(argv)
    if not args.billing and not args.erp:
        parser.error("give --billing and/or --erp")
    if args.billing:
        counts = generate_billing(args.billing, seed=args.seed, customers=args.customers,
                                  usage_rows=args.usage_rows, invoice_lines=args.invoice_lines)
        print(f"billing -> {args.billing}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if args.erp:
        counts = generate_erp(args.erp, seed=args.seed, customers=args.customers)
        print(f"erp -> {args.erp}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
