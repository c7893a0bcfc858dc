"""Rating a period's usage with a contract's tariff: exact arithmetic, no floats, no I/O.

A call's seconds are first rounded up to the tariff's billing increment (per call, so the order and grouping of
calls cannot change a total), then multiplied by its participants: the period's participant-seconds. Minutes
included in the plan come off first; what remains is priced through the graduated tiers (or the contract's
negotiated flat price), one invoice line per tier, each line's net rounded to the minor unit as the tariff says;
a minimum charge tops the period up with a line of its own. VAT is computed per line, half-up, at the line's rate.
Money is computed as exact fractions of the minor unit and carried as integer minor units and ``Decimal`` prices.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from ledgerlink.errors import ConfigurationError

ROUNDING_MODES = ("half_up", "half_even", "up", "down")
MINOR_UNITS = 100  # kopecks per rouble, kuruş per lira


@dataclass(frozen=True)
class Tier:
    from_minutes: int
    price_per_minute: Decimal  # major units


@dataclass(frozen=True)
class Tariff:
    """A tariff as a contract applies it in one period (``tiers`` already replaced by a negotiated price)."""

    tariff_id: str
    name: str
    currency: str
    vat_rate: Decimal  # percent
    billing_increment_seconds: int
    included_minutes: int
    minimum_charge_minor: int
    rounding: str
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        problems = []
        if self.rounding not in ROUNDING_MODES:
            problems.append(f"rounding {self.rounding!r} is not one of {list(ROUNDING_MODES)}")
        if self.billing_increment_seconds < 1:
            problems.append("the billing increment must be at least one second")
        if not self.tiers or self.tiers[0].from_minutes != 0:
            problems.append("the first tier must start at minute 0")
        if any(b.from_minutes <= a.from_minutes for a, b in zip(self.tiers, self.tiers[1:])):
            problems.append("tiers must start at increasing minutes")
        if any(t.price_per_minute < 0 for t in self.tiers) or self.included_minutes < 0 or self.minimum_charge_minor < 0:
            problems.append("prices, included minutes and the minimum charge cannot be negative")
        if problems:
            raise ConfigurationError(f"tariff {self.tariff_id}: " + "; ".join(problems))

    def negotiated(self, price_per_minute: Decimal | None) -> Tariff:
        """The tariff with a contract's negotiated flat price per minute in place of its tiers (None: as is)."""
        if price_per_minute is None:
            return self
        return Tariff(self.tariff_id, self.name, self.currency, self.vat_rate, self.billing_increment_seconds,
                      self.included_minutes, self.minimum_charge_minor, self.rounding, (Tier(0, price_per_minute),))


@dataclass(frozen=True)
class RatedLine:
    """One invoice line: ``key`` says which part of the rating it is (stable across re-ratings, so an adjustment
    can set a line against the one billed before)."""

    key: str
    tariff_id: str
    description: str
    quantity: Decimal  # participant-minutes (1 for the minimum-charge line)
    unit_price: Decimal  # major units per minute
    net_minor: int
    vat_rate: Decimal
    vat_minor: int

    @property
    def gross_minor(self) -> int:
        return self.net_minor + self.vat_minor


def billed_seconds(duration_seconds: int, participants: int, increment: int) -> int:
    """A call's participant-seconds as billed: its duration rounded up to the increment, times participants."""
    return -(-duration_seconds // increment) * increment * participants


def participant_seconds(calls: Iterable[tuple[int, int]], increment: int) -> int:
    """The period's billed participant-seconds of (duration_seconds, participants) calls."""
    return sum(billed_seconds(d, p, increment) for d, p in calls)


def round_minor(amount: Fraction, mode: str) -> int:
    """An exact amount of minor units to a whole one, by the tariff's rounding mode."""
    floor = amount.numerator // amount.denominator
    rest = amount - floor
    if rest == 0:
        return floor
    if mode == "down":
        return floor if amount >= 0 else floor + 1
    if mode == "up":
        return floor + 1 if amount >= 0 else floor
    half = Fraction(1, 2)
    if rest > half:
        return floor + 1
    if rest < half:
        return floor
    if mode == "half_even":
        return floor if floor % 2 == 0 else floor + 1
    return floor + 1 if amount >= 0 else floor  # half_up: away from zero


def vat_minor(net_minor: int, rate: Decimal) -> int:
    """Per-line VAT, half-up (away from zero), exactly."""
    return round_minor(Fraction(net_minor) * Fraction(rate) / 100, "half_up")


def _minutes(seconds: int) -> Decimal:
    return (Decimal(seconds) / 60).quantize(Decimal("0.0001"))


def rate_period(seconds: int, tariff: Tariff, label: str) -> list[RatedLine]:
    """The invoice lines for ``seconds`` participant-seconds in one period (``label`` names the period)."""
    lines: list[RatedLine] = []
    included = min(seconds, tariff.included_minutes * 60)
    if included:
        lines.append(RatedLine("included", tariff.tariff_id, f"{tariff.name}, {label}: minutes included in the plan",
                               _minutes(included), Decimal("0.0000"), 0, tariff.vat_rate, 0))
    billable = seconds - included
    bounds = [t.from_minutes * 60 for t in tariff.tiers[1:]] + [None]
    for index, (tier, upper) in enumerate(zip(tariff.tiers, bounds)):
        low = tier.from_minutes * 60
        in_tier = max(0, (billable if upper is None else min(billable, upper)) - low)
        if not in_tier:
            continue
        net = round_minor(Fraction(in_tier) * Fraction(tier.price_per_minute) * MINOR_UNITS / 60, tariff.rounding)
        span = f"from minute {tier.from_minutes:,}" if len(tariff.tiers) > 1 else "participant-minutes"
        lines.append(RatedLine(f"tier-{index}", tariff.tariff_id, f"{tariff.name}, {label}: {span}",
                               _minutes(in_tier), tier.price_per_minute, net, tariff.vat_rate,
                               vat_minor(net, tariff.vat_rate)))
    net_total = sum(line.net_minor for line in lines)
    if seconds and net_total < tariff.minimum_charge_minor:
        top_up = tariff.minimum_charge_minor - net_total
        lines.append(RatedLine("minimum", tariff.tariff_id, f"{tariff.name}, {label}: minimum charge for the period",
                               Decimal(1), Decimal(top_up) / MINOR_UNITS, top_up, tariff.vat_rate,
                               vat_minor(top_up, tariff.vat_rate)))
    return lines


def difference(now: Sequence[RatedLine], billed: Sequence[RatedLine]) -> list[RatedLine]:
    """What an adjustment carries: each line as rated now less what the issued documents billed for it (amounts
    and quantities are differences). VAT is each adjustment line's own, half-up, as on every line: the tax rule is
    per line, and the ERP's gate checks every line so (the period's documents may then differ from the rating by a
    minor unit of VAT, as two invoices would)."""
    before: dict[tuple[str, str], list[RatedLine]] = {}
    for line in billed:
        before.setdefault((line.tariff_id, line.key), []).append(line)
    out = []
    current = {(line.tariff_id, line.key): line for line in now}
    for key in list(current) + [k for k in before if k not in current]:
        line = current.get(key)
        old = before.get(key, [])
        quantity = (line.quantity if line else Decimal(0)) - sum((o.quantity for o in old), Decimal(0))
        net = (line.net_minor if line else 0) - sum(o.net_minor for o in old)
        if not (quantity or net):
            continue
        model = line or old[-1]
        out.append(RatedLine(model.key, model.tariff_id, f"adjustment: {model.description}", quantity,
                             model.unit_price, net, model.vat_rate, vat_minor(net, model.vat_rate)))
    return out


def totals(lines: Iterable[RatedLine]) -> tuple[int, int, int]:
    """Net, VAT and gross of some lines, in minor units: the exact sums of the lines."""
    net = vat = 0
    for line in lines:
        net += line.net_minor
        vat += line.vat_minor
    return net, vat, net + vat


def lines_by_tariff(seconds_by_tariff: Mapping[str, int], tariffs: Mapping[str, Tariff], label: str) -> list[RatedLine]:
    """A period's lines for an account whose usage falls under one or more tariffs, in tariff order."""
    out: list[RatedLine] = []
    for tariff_id in sorted(seconds_by_tariff):
        out += rate_period(seconds_by_tariff[tariff_id], tariffs[tariff_id], label)
    return out
