"""reconcile.sql_figures: any table's count and exact totals, summed by its database, less held-back keys."""
from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from ledgerlink.reconcile import sql_figures


def test_any_table_is_summed_per_currency_and_rate_under_its_own_key(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'side.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE entries (entry_no TEXT PRIMARY KEY, currency TEXT, vat_rate TEXT, "
                             "net_minor INTEGER, vat_minor INTEGER, gross_minor INTEGER)"))
        conn.execute(sa.text("INSERT INTO entries VALUES (:k, :c, :r, :n, :v, :g)"), [
            {"k": "E1", "c": "TRY", "r": "20", "n": 1000, "v": 200, "g": 1200},
            {"k": "E2", "c": "TRY", "r": "20", "n": 5, "v": 1, "g": 6},
            {"k": "E3", "c": "RUB", "r": "0", "n": 99999, "v": 0, "g": 99999}])
    full = sql_figures(engine, "entries", key="entry_no")
    assert full.count == 3
    assert full.totals[("TRY", "20")] == {"net": Decimal("10.05"), "vat": Decimal("2.01"), "gross": Decimal("12.06")}
    assert full.totals[("RUB", "0")]["gross"] == Decimal("999.99")
    held = sql_figures(engine, "entries", ["E2", "not-there"], key="entry_no")
    assert held.count == 2
    assert held.totals[("TRY", "20")] == {"net": Decimal("10.00"), "vat": Decimal("2.00"), "gross": Decimal("12.00")}
