"""Rating in exact arithmetic: increments, included minutes, tiers, negotiated prices, minimum charge, rounding
modes, VAT per line half-up; and the property that an invoice's total is the sum of its lines."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlink.errors import ConfigurationError
from ledgerlink.usage.rating import (ROUNDING_MODES, Tariff, Tier, billed_seconds, difference, participant_seconds,
                                     rate_period, round_minor, totals, vat_minor)


def tariff(**changes) -> Tariff:
    values = dict(tariff_id="RU-AUDIO", name="Аудиоконференция", currency="RUB", vat_rate=Decimal(22),
                  billing_increment_seconds=60, included_minutes=0, minimum_charge_minor=0, rounding="half_up",
                  tiers=(Tier(0, Decimal("1.5000")),))
    values.update(changes)
    return Tariff(**values)


def test_each_call_is_rounded_up_to_the_increment_before_participants_multiply():
    assert billed_seconds(61, 3, 60) == 120 * 3
    assert billed_seconds(60, 3, 60) == 180
    assert billed_seconds(0, 5, 60) == 0
    assert participant_seconds([(61, 2), (1, 1)], 6) == 66 * 2 + 6


def test_included_minutes_then_graduated_tiers_then_vat_half_up_per_line():
    plan = tariff(included_minutes=10, tiers=(Tier(0, Decimal("1.5000")), Tier(100, Decimal("1.2750"))))
    lines = rate_period(200 * 60, plan, "2026-11")  # 200 minutes: 10 included, 100 at 1.50, 90 at 1.275
    assert [(l.key, l.quantity, l.net_minor, l.vat_minor) for l in lines] == [
        ("included", Decimal("10.0000"), 0, 0),
        ("tier-0", Decimal("100.0000"), 15000, 3300),
        ("tier-1", Decimal("90.0000"), 11475, 2525),  # 114.75 * 22 % = 25.245 -> 25.25 (half-up)
    ]
    assert totals(lines) == (26475, 5825, 32300)


def test_a_minimum_charge_tops_the_period_up_with_its_own_line():
    lines = rate_period(60, tariff(minimum_charge_minor=50_000), "2026-11")
    assert [(l.key, l.net_minor) for l in lines] == [("tier-0", 150), ("minimum", 49_850)]
    assert totals(lines)[0] == 50_000
    assert rate_period(0, tariff(minimum_charge_minor=50_000), "2026-11") == [], "no usage, no invoice"


def test_a_negotiated_price_replaces_the_tiers():
    plan = tariff(tiers=(Tier(0, Decimal("1.5")), Tier(10, Decimal("1.0")))).negotiated(Decimal("1.20"))
    lines = rate_period(20 * 60, plan, "2026-11")
    assert [(l.key, l.net_minor) for l in lines] == [("tier-0", 2400)]


@pytest.mark.parametrize("mode, amounts", [
    ("half_up", {Fraction(5, 2): 3, Fraction(7, 2): 4, Fraction(-5, 2): -3, Fraction(21, 10): 2}),
    ("half_even", {Fraction(5, 2): 2, Fraction(7, 2): 4, Fraction(21, 10): 2, Fraction(29, 10): 3}),
    ("up", {Fraction(21, 10): 3, Fraction(2): 2}),
    ("down", {Fraction(29, 10): 2, Fraction(2): 2}),
])
def test_rounding_as_the_tariff_says(mode, amounts):
    assert {amount: round_minor(amount, mode) for amount in amounts} == amounts


def test_a_fraction_of_a_minor_unit_is_rounded_per_line_by_the_tariff():
    # 1 participant-second at 1.2750/min = 2.125 kopecks
    assert [l.net_minor for l in rate_period(1, tariff(billing_increment_seconds=1, rounding="half_even",
                                                       tiers=(Tier(0, Decimal("1.2750")),)), "p")] == [2]
    assert [l.net_minor for l in rate_period(1, tariff(billing_increment_seconds=1, rounding="up",
                                                       tiers=(Tier(0, Decimal("1.2750")),)), "p")] == [3]


def test_vat_is_half_up_away_from_zero():
    assert vat_minor(11475, Decimal(22)) == 2525
    assert vat_minor(-11475, Decimal(22)) == -2525
    assert vat_minor(5, Decimal(10)) == 1  # 0.5 -> 1


def test_a_bad_tariff_is_refused_naming_it():
    with pytest.raises(ConfigurationError, match="RU-AUDIO: rounding 'nearest'"):
        tariff(rounding="nearest")
    with pytest.raises(ConfigurationError, match="first tier must start at minute 0"):
        tariff(tiers=(Tier(5, Decimal(1)),))


def test_an_adjustment_carries_the_differences_so_documents_add_up_to_the_rating():
    plan = tariff(included_minutes=10, tiers=(Tier(0, Decimal("1.5")), Tier(100, Decimal("1.275"))))
    billed = rate_period(150 * 60, plan, "2026-11")
    for minutes in (230, 90, 151):  # more, less, a minute more
        now = rate_period(minutes * 60, plan, "2026-11")
        adjustment = difference(now, billed)
        assert all(line.description.startswith("adjustment: ") for line in adjustment)
        assert totals(billed)[0] + totals(adjustment)[0] == totals(now)[0], "net adds up exactly"
        # VAT is each line's own, half-up, as on any line (the ERP's gate checks every line so)
        assert all(line.vat_minor == vat_minor(line.net_minor, line.vat_rate) for line in adjustment)
    assert difference(billed, billed) == []


tiers = st.lists(st.tuples(st.integers(1, 50_000), st.decimals("0", "20", places=4)), max_size=3).map(
    lambda extra: tuple(sorted({0: Decimal("1.5"), **{m: p for m, p in extra}}.items())))


@st.composite
def tariffs(draw):
    return tariff(billing_increment_seconds=draw(st.sampled_from([1, 6, 30, 60])),
                  included_minutes=draw(st.integers(0, 2_000)),
                  minimum_charge_minor=draw(st.integers(0, 100_000)),
                  rounding=draw(st.sampled_from(ROUNDING_MODES)),
                  vat_rate=draw(st.sampled_from([Decimal(0), Decimal(10), Decimal(20), Decimal(22)])),
                  tiers=tuple(Tier(m, p) for m, p in draw(tiers)))


@settings(max_examples=300, deadline=None)
@given(plan=tariffs(), calls=st.lists(st.tuples(st.integers(0, 4 * 3600), st.integers(0, 40)), max_size=60))
def test_an_invoice_total_is_the_sum_of_its_rated_lines(plan, calls):
    lines = rate_period(participant_seconds(calls, plan.billing_increment_seconds), plan, "2026-11")
    net, vat, gross = totals(lines)
    assert net == sum(l.net_minor for l in lines) and vat == sum(l.vat_minor for l in lines)
    assert gross == sum(l.gross_minor for l in lines) == net + vat
    assert all(l.vat_minor == vat_minor(l.net_minor, l.vat_rate) for l in lines), "VAT per line, half-up"
    if lines:
        assert net >= plan.minimum_charge_minor


@settings(max_examples=200, deadline=None)
@given(plan=tariffs(), calls=st.lists(st.tuples(st.integers(0, 4 * 3600), st.integers(0, 40)), max_size=40),
       data=st.data())
def test_any_split_and_order_of_the_calls_gives_the_same_lines(plan, calls, data):
    """The period's usage grouped into any files, in any order, is the same participant-seconds: the same lines."""
    shuffled = data.draw(st.permutations(calls))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(calls)), max_size=5)))
    files = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(calls)])]
    split = sum(participant_seconds(f, plan.billing_increment_seconds) for f in files)
    assert rate_period(split, plan, "p") == rate_period(participant_seconds(calls, plan.billing_increment_seconds),
                                                        plan, "p")
