"""Reconciliation: counts and exact money totals per currency and VAT rate, source against target."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa


MINOR_UNITS = {"TRY": 2, "RUB": 2}
AMOUNT_COLUMNS = ("net_minor", "vat_minor", "gross_minor")


@dataclass
class Figures:
    """What one side holds: a row count and, per (currency, VAT rate), exact totals in major units."""

    count: int
    totals: dict[tuple[str, str], dict[str, Decimal]] = field(default_factory=dict)

    def as_rows(self) -> list[dict]:
        return [{"currency": cur, "vat_rate": rate, **{k: v for k, v in amounts.items()}}
                for (cur, rate), amounts in sorted(self.totals.items())]


def to_major(minor: int, currency: str) -> Decimal:
    """Integer minor units to an exact Decimal amount (kuruş → lira, kopecks → roubles)."""
    digits = MINOR_UNITS.get(currency, 2)
    # quantize keeps the currency's scale ("0.00", not "0E-2"); exact for any integer.
    return Decimal(int(minor)).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def figures(df: pd.DataFrame, amount_columns=AMOUNT_COLUMNS) -> Figures:
    """Count and per-currency, per-VAT-rate totals of integer minor-unit columns (summed exactly as int64)."""
    present = [c for c in amount_columns if c in df.columns]
    if df.empty or not present or "currency" not in df.columns:
        return Figures(count=len(df))
    group_columns = ["currency"] + (["vat_rate"] if "vat_rate" in df.columns else [])
    sums = df.groupby(group_columns, dropna=False, observed=True)[present].sum()
    totals = {}
    # to_dict keeps each column's own integers; iterrows would pass a row through one common (maybe float) dtype.
    for index, row in sums.to_dict("index").items():
        currency, rate = (index if isinstance(index, tuple) else (index, "-"))
        totals[(str(currency), str(rate))] = {
            c.removesuffix("_minor"): to_major(int(row[c]), str(currency)) for c in present}
    return Figures(count=len(df), totals=totals)


def sql_figures(engine: sa.Engine, table: str, exclude_keys: Sequence[str] = (), *, key: str) -> Figures:
    """Count and exact totals per currency and VAT rate of a table, summed by the database (integers: no rounding).

    The table has ``currency``, ``vat_rate`` and the integer minor-unit columns ``net_minor``, ``vat_minor``,
    ``gross_minor``. Rows whose ``key`` is in ``exclude_keys`` (held back this run) are left out by subtracting
    their own sums, asked for in slices: a NOT IN list of every held key would hit SQLite's limit on bound
    parameters.
    """
    figures = _grouped_sums(engine, f"SELECT currency, vat_rate, count(*), sum(net_minor), sum(vat_minor), "
                                    f"sum(gross_minor) FROM {table} GROUP BY currency, vat_rate", {})
    keys = list(exclude_keys)
    for start in range(0, len(keys), 900):
        held = _grouped_sums(engine, f"SELECT currency, vat_rate, count(*), sum(net_minor), sum(vat_minor), "
                                     f"sum(gross_minor) FROM {table} WHERE {key} IN :keys GROUP BY currency, vat_rate",
                             {"keys": keys[start:start + 900]})
        figures.count -= held.count
        for group, amounts in held.totals.items():
            for column, amount in amounts.items():
                figures.totals[group][column] -= amount
    return figures


def _grouped_sums(engine: sa.Engine, sql: str, params: dict) -> Figures:
    statement = sa.text(sql)
    if "keys" in params:
        statement = statement.bindparams(sa.bindparam("keys", expanding=True))
    figures = Figures(count=0)
    with engine.connect() as conn:
        for currency, rate, count, net, vat, gross in conn.execute(statement, params):
            figures.count += int(count)
            figures.totals[(str(currency), str(rate))] = {
                "net": to_major(int(net), currency), "vat": to_major(int(vat), currency),
                "gross": to_major(int(gross), currency)}
    return figures


def compare(flow: str, source: Figures, target: Figures, *, what: str = "rows") -> list[str]:
    """Every difference, each with both figures; empty when the two sides agree."""
    differences = []
    if source.count != target.count:
        differences.append(f"{what}: source {source.count}, target {target.count}")
    for group in sorted(set(source.totals) | set(target.totals)):
        left, right = source.totals.get(group, {}), target.totals.get(group, {})
        for column in sorted(set(left) | set(right)):
            a, b = left.get(column, Decimal(0)), right.get(column, Decimal(0))
            if a != b:
                differences.append(f"{column} in {group[0]} at VAT {group[1]}%: source {a}, target {b} "
                                   f"(difference {a - b})")
    return differences
