"""Reconciliation: counts and exact money totals per currency and VAT rate, source against target."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd

from ledgerlink.errors import ReconciliationError

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


def assert_reconciled(flow: str, differences: list[str]) -> None:
    if differences:
        raise ReconciliationError(flow, differences)
