"""The demo-data generator: deterministic, valid tax ids, exact money, consistent invoices."""
from __future__ import annotations

import re
import shutil
import sqlite3
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.ru import inn
from stdnum.tr import tckimlik, vkn

from sandbox import generator
from sandbox.generator import (
    AS_OF,
    BILLING_TABLES,
    ERP_TABLES,
    MUTATION_INSTANT,
    build_customers,
    generate_billing,
    generate_erp,
    mutate_billing,
    round_half_up_div,
)

CUSTOMERS = 60
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
DATE_COLUMNS = {"signed_on", "valid_from", "issue_date", "period_start", "period_end", "paid_on", "order_date"}


def _dump(path: Path, tables) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as connection:
        return {
            table.name: connection.execute(
                f"SELECT * FROM {table.name} ORDER BY {', '.join(table.primary_key)}").fetchall()
            for table in tables
        }


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Billing and ERP twice with seed 42, once with seed 43."""
    folder = tmp_path_factory.mktemp("generated")
    paths = {}
    for name, seed in (("a", 42), ("b", 42), ("c", 43)):
        paths[f"billing_{name}"] = folder / f"billing_{name}.db"
        paths[f"erp_{name}"] = folder / f"erp_{name}.db"
        generate_billing(paths[f"billing_{name}"], seed=seed, customers=CUSTOMERS)
        generate_erp(paths[f"erp_{name}"], seed=seed, customers=CUSTOMERS)
    return paths


@pytest.fixture()
def billing(world) -> sqlite3.Connection:
    connection = sqlite3.connect(world["billing_a"])
    yield connection
    connection.close()


def test_same_seed_gives_identical_tables(world):
    assert _dump(world["billing_a"], BILLING_TABLES) == _dump(world["billing_b"], BILLING_TABLES)
    assert _dump(world["erp_a"], ERP_TABLES) == _dump(world["erp_b"], ERP_TABLES)


def test_another_seed_gives_other_data(world):
    first, other = _dump(world["billing_a"], BILLING_TABLES), _dump(world["billing_c"], BILLING_TABLES)
    for name in ("customers", "contracts", "usage", "invoices", "invoice_lines", "payments"):
        assert first[name] != other[name], name
    assert _dump(world["erp_a"], ERP_TABLES)["erp_customers"] != _dump(world["erp_c"], ERP_TABLES)["erp_customers"]


def test_default_scale_is_a_few_thousand_rows(world):
    counts = {name: len(rows) for name, rows in _dump(world["billing_a"], BILLING_TABLES).items()}
    assert counts["customers"] == CUSTOMERS
    assert counts["usage"] == generator.USAGE_ROWS_PER_CUSTOMER * CUSTOMERS
    assert 0 < counts["invoices"] <= CUSTOMERS * len(generator.PERIOD_MONTHS)
    assert counts["invoice_lines"] >= counts["invoices"]
    assert counts["payments"] > 0


def test_every_tax_id_is_valid(world):
    with sqlite3.connect(world["billing_a"]) as connection:
        customers = connection.execute("SELECT country, entity_kind, tax_id, kpp FROM customers").fetchall()
    customers += [(p.country, p.entity_kind, p.tax_id, p.kpp) for p in build_customers(7, 400)]
    kinds = set()
    for country, kind, tax_id, kpp in customers:
        kinds.add((country, kind))
        if country == "TR":
            valid = vkn.is_valid(tax_id) and len(tax_id) == 10 if kind == "company" else \
                tckimlik.is_valid(tax_id) and len(tax_id) == 11
            assert valid, (kind, tax_id)
            assert kpp is None
        else:
            assert inn.is_valid(tax_id), tax_id
            assert len(tax_id) == (10 if kind == "company" else 12), (kind, tax_id)
            if kind == "company":
                assert re.fullmatch(r"\d{9}", kpp) and kpp[:4] == tax_id[:4], kpp
            else:
                assert kpp is None
    assert kinds == {("TR", "company"), ("TR", "person"), ("RU", "company"), ("RU", "person")}
    tax_ids = [row[2] for row in customers[:CUSTOMERS]]
    assert len(set(tax_ids)) == len(tax_ids)


def test_customers_mix_countries_and_carry_real_names():
    customers = build_customers(42, 1000)
    turkish = sum(c.country == "TR" for c in customers) / len(customers)
    assert 0.5 <= turkish <= 0.6
    names = " ".join(c.legal_name for c in customers)
    for sample in ("«", "ООО", "ИП ", "A.Ş.", "ş", "ğ", "İ", "ё"):
        assert sample in names, sample
    assert all(c.email.isascii() and "@" in c.email for c in customers)
    assert {c.currency for c in customers if c.country == "TR"} == {"TRY"}
    assert {c.currency for c in customers if c.country == "RU"} == {"RUB"}


def test_invoice_totals_are_the_sums_of_their_lines(billing):
    mismatches = billing.execute("""
        SELECT i.invoice_id FROM invoices i
        JOIN (SELECT invoice_id, SUM(net_minor) net, SUM(vat_minor) vat, SUM(gross_minor) gross, COUNT(*) n
              FROM invoice_lines GROUP BY invoice_id) l ON l.invoice_id = i.invoice_id
        WHERE i.net_minor <> l.net OR i.vat_minor <> l.vat OR i.gross_minor <> l.gross
           OR i.gross_minor <> i.net_minor + i.vat_minor
    """).fetchall()
    assert mismatches == []
    assert billing.execute("SELECT COUNT(*) FROM invoices WHERE invoice_id NOT IN"
                           " (SELECT invoice_id FROM invoice_lines)").fetchone() == (0,)


def test_line_money_is_rounded_half_up_per_line(billing):
    rows = billing.execute("SELECT quantity, unit_price_minor, net_minor, vat_rate, vat_minor, gross_minor,"
                           " currency, tariff_id FROM invoice_lines").fetchall()
    assert rows
    for quantity, unit_price, net, vat_rate, vat, gross, currency, tariff_id in rows:
        assert re.fullmatch(r"\d+\.\d", quantity), quantity
        assert net == _half_up(Decimal(quantity) * unit_price)
        assert vat == _half_up(Decimal(net) * Decimal(vat_rate) / 100)
        assert gross == net + vat
        assert vat_rate in {"0", "20", "22"}
        assert tariff_id.startswith("TR-" if currency == "TRY" else "RU-")


def test_vat_rates_follow_country_and_year(billing):
    rates = set(billing.execute("""
        SELECT l.currency, substr(i.period_start, 1, 4), l.vat_rate FROM invoice_lines l
        JOIN invoices i ON i.invoice_id = l.invoice_id WHERE l.vat_rate <> '0'""").fetchall())
    assert rates == {("TRY", "2025", "20"), ("TRY", "2026", "20"), ("RUB", "2025", "20"), ("RUB", "2026", "22")}


def test_timestamps_carry_an_offset_and_dates_are_plain(world):
    for key, tables in (("billing_a", BILLING_TABLES), ("erp_a", ERP_TABLES)):
        dump = _dump(world[key], tables)
        for table in tables:
            for position, column in enumerate(table.column_names):
                values = [row[position] for row in dump[table.name]]
                if column.endswith("_at"):
                    assert all(TIMESTAMP.match(v) for v in values), (table.name, column)
                    assert max(values) < AS_OF.isoformat(), (table.name, column)
                elif column in DATE_COLUMNS:
                    assert all(DATE.match(v) for v in values), (table.name, column)


def test_no_float_columns_or_values(world):
    for key, tables in (("billing_a", BILLING_TABLES), ("erp_a", ERP_TABLES)):
        with sqlite3.connect(world[key]) as connection:
            for table in tables:
                declared = {row[2] for row in connection.execute(f"PRAGMA table_info({table.name})")}
                assert declared <= {"TEXT", "INTEGER", "BIGINT"}, (table.name, declared)
                for column in table.column_names:
                    kinds = {row[0] for row in connection.execute(
                        f"SELECT DISTINCT typeof({column}) FROM {table.name}")}
                    assert "real" not in kinds, (table.name, column)
                    if column.endswith("_minor") or column in ("duration_seconds", "participants", "stock_qty"):
                        assert kinds <= {"integer"}, (table.name, column, kinds)


def test_invoice_numbers_follow_each_country_scheme(billing):
    rows = billing.execute("SELECT i.number, i.issue_date, c.country FROM invoices i"
                           " JOIN customers c USING (customer_id) ORDER BY i.invoice_id").fetchall()
    numbers = [number for number, _, _ in rows]
    assert len(set(numbers)) == len(numbers)
    expected_sequence: dict[str, int] = {}
    for number, issue_date, country in rows:
        if country == "TR":
            assert re.fullmatch(r"LLK\d{13}", number) and len(number) == 16, number
            year = issue_date[:4]
            assert number[3:7] == year
            expected_sequence[year] = expected_sequence.get(year, 0) + 1
            assert int(number[7:]) == expected_sequence[year]  # restarts every year, no gaps
        else:
            assert re.fullmatch(r"БЛ-\d{6}", number), number


def test_one_invoice_per_customer_month_with_usage(billing):
    invoiced = billing.execute("SELECT customer_id, substr(period_start, 1, 7) FROM invoices").fetchall()
    used = billing.execute("SELECT DISTINCT customer_id, substr(started_at, 1, 7) FROM usage").fetchall()
    assert len(invoiced) == len(set(invoiced))
    assert set(invoiced) == set(used)


def test_usage_belongs_to_the_customer_contract_in_force(billing):
    wrong = billing.execute("""
        SELECT u.usage_id FROM usage u JOIN contracts k ON k.contract_id = u.contract_id
        WHERE k.customer_id <> u.customer_id OR k.signed_on > substr(u.started_at, 1, 10)
    """).fetchall()
    assert wrong == []
    months = {row[0] for row in billing.execute("SELECT DISTINCT substr(started_at, 1, 7) FROM usage")}
    assert min(months) == "2025-11" and max(months) == "2026-10"
    started = [row[0] for row in billing.execute("SELECT started_at FROM usage ORDER BY usage_id")]
    assert started == sorted(started)


def test_paid_invoices_are_covered_by_their_payments(billing):
    rows = billing.execute("""
        SELECT i.status, i.gross_minor, COALESCE(SUM(p.amount_minor), 0), i.currency,
               MIN(p.currency), MAX(p.currency), MIN(p.paid_on), i.issue_date
        FROM invoices i LEFT JOIN payments p ON p.invoice_id = i.invoice_id GROUP BY i.invoice_id
    """).fetchall()
    for status, gross, paid, currency, low_currency, high_currency, first_paid, issued in rows:
        if status == "paid":
            assert paid == gross
        else:
            assert paid < gross or gross == 0
        if paid:
            assert low_currency == high_currency == currency
            assert first_paid > issued
    assert {row[0] for row in rows} == {"paid", "issued", "cancelled"}


def test_erp_holds_the_same_legal_entities(world):
    billing = _dump(world["billing_a"], BILLING_TABLES)["customers"]
    erp = _dump(world["erp_a"], ERP_TABLES)
    by_billing_id = {row[1]: row for row in erp["erp_customers"]}
    assert set(by_billing_id) == {row[0] for row in billing}
    moved = 0
    for customer_id, legal_name, country, _, tax_id, kpp, address, city, *_, updated_at in billing:
        erp_row = by_billing_id[customer_id]
        assert erp_row[2:6] == (legal_name, country, tax_id, kpp)
        assert erp_row[7] == city
        if erp_row[6] != address:
            moved += 1
            assert erp_row[8] > updated_at  # the master's change is the newer one
    assert moved < CUSTOMERS / 5
    orders = {row[0]: row for row in erp["sales_orders"]}
    totals: dict[str, int] = {}
    for order_id, _, sku, quantity, price, net in erp["sales_order_lines"]:
        assert net == _half_up(Decimal(quantity) * price)
        assert sku.endswith(orders[order_id][4][:2])
        totals[order_id] = totals.get(order_id, 0) + net
    assert all(orders[order_id][5] == total for order_id, total in totals.items())


def test_invoice_lines_knob_writes_exactly_that_many_consistent_lines(tmp_path):
    path = tmp_path / "billing.db"
    counts = generate_billing(path, seed=5, customers=20, usage_rows=50, invoice_lines=3001)
    assert counts["invoice_lines"] == 3001 and counts["usage"] == 50
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM invoice_lines").fetchone() == (3001,)
        assert connection.execute("""
            SELECT COUNT(*) FROM invoices i JOIN (SELECT invoice_id, SUM(gross_minor) gross FROM invoice_lines
            GROUP BY invoice_id) l USING (invoice_id) WHERE l.gross <> i.gross_minor""").fetchone() == (0,)


def test_mutation_is_deterministic_and_keeps_invoices_consistent(world, tmp_path):
    copies = [tmp_path / "one.db", tmp_path / "two.db"]
    for copy in copies:
        shutil.copy(world["billing_a"], copy)
    touched = [mutate_billing(copy, seed=42, changed_fraction=0.05, deleted=3, added=4) for copy in copies]
    assert touched[0] == touched[1]
    assert _dump(copies[0], BILLING_TABLES) == _dump(copies[1], BILLING_TABLES)
    keys = touched[0]
    assert len(keys["customers"]["changed"]) == round(CUSTOMERS * 0.05)
    assert len(keys["invoice_lines"]["deleted"]) == 3 and len(keys["invoice_lines"]["added"]) == 4
    assert keys["invoice_lines"]["changed"] and keys["invoices"]["changed"]

    stamp = MUTATION_INSTANT.isoformat()
    before, after = _dump(world["billing_a"], BILLING_TABLES), _dump(copies[0], BILLING_TABLES)
    lines_after = {row[0]: row for row in after["invoice_lines"]}
    lines_before = {row[0]: row for row in before["invoice_lines"]}
    assert not set(keys["invoice_lines"]["deleted"]) & set(lines_after)
    assert set(keys["invoice_lines"]["added"]) <= set(lines_after) - set(lines_before)
    for line_id in keys["invoice_lines"]["changed"]:
        assert lines_after[line_id][12] == stamp and lines_after[line_id][5] != lines_before[line_id][5]
    untouched = set(lines_before) - set(keys["invoice_lines"]["changed"]) - set(keys["invoice_lines"]["deleted"])
    assert all(lines_after[line_id] == lines_before[line_id] for line_id in untouched)
    customers_after = {row[0]: row for row in after["customers"]}
    assert all(customers_after[c][12] == stamp for c in keys["customers"]["changed"])
    with sqlite3.connect(copies[0]) as connection:
        assert connection.execute("""
            SELECT COUNT(*) FROM invoices i JOIN (SELECT invoice_id, SUM(net_minor) net, SUM(vat_minor) vat,
            SUM(gross_minor) gross FROM invoice_lines GROUP BY invoice_id) l USING (invoice_id)
            WHERE l.net <> i.net_minor OR l.vat <> i.vat_minor OR l.gross <> i.gross_minor""").fetchone() == (0,)
        changed_invoices = connection.execute(
            "SELECT COUNT(*) FROM invoices WHERE updated_at = ?", (stamp,)).fetchone()[0]
    assert changed_invoices == len(keys["invoices"]["changed"])


def test_cli_writes_both_databases(tmp_path, capsys):
    assert generator.main(["--billing", str(tmp_path / "b.db"), "--erp", str(tmp_path / "e.db"),
                           "--customers", "5", "--usage-rows", "40"]) == 0
    output = capsys.readouterr().out
    assert "usage 40" in output and "erp_customers 5" in output
    with pytest.raises(SystemExit):
        generator.main([])


def test_sqlite_url_targets_are_accepted(tmp_path):
    counts = generate_billing(f"sqlite:///{tmp_path / 'billing.db'}", customers=3, usage_rows=10)
    assert counts["customers"] == 3 and (tmp_path / "billing.db").exists()
    with pytest.raises(ValueError):
        generate_billing("mysql://somewhere/db", customers=3)


@given(st.integers(min_value=-10 ** 12, max_value=10 ** 12), st.integers(min_value=1, max_value=10 ** 4))
def test_round_half_up_div_matches_decimal(numerator, denominator):
    assert round_half_up_div(numerator, denominator) == _half_up(Decimal(numerator) / Decimal(denominator))


def test_generator_never_imports_ledgerlink():
    source = Path(generator.__file__).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from|import)\s+ledgerlink", source, re.MULTILINE)


def test_every_country_of_the_generated_customers_is_in_the_1c_stand_ins_countries():
    """The 1C stand-in seeds Catalog_СтраныМира; a customer of a country it lacks could not be sent."""
    from sandbox.generator import build_customers
    from sandbox.onec.schema import COUNTRIES, SEED

    seeded = {item["КодАльфа2"] for item in SEED[COUNTRIES]["items"]}
    assert {customer.country for customer in build_customers(seed=42, count=300)} <= seeded
