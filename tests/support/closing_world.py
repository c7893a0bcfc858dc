"""A small billing for the month-end file exchange: a Russian and a Turkish customer with contracts and tariffs, and
November 2026's documents in every state (issued, paid, cancelled, draft), one outside the month and one that
cannot go to 1C (a VAT rate 1C does not know). ``many`` adds generated documents (the bench's shape)."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

DDL = [
    """CREATE TABLE customers (customer_id TEXT PRIMARY KEY, legal_name TEXT NOT NULL, country TEXT NOT NULL,
       entity_kind TEXT NOT NULL, tax_id TEXT NOT NULL, kpp TEXT, updated_at TEXT NOT NULL)""",
    """CREATE TABLE contracts (contract_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, number TEXT NOT NULL,
       signed_on TEXT NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE tariffs (tariff_id TEXT PRIMARY KEY, name TEXT NOT NULL, unit TEXT NOT NULL,
       price_minor BIGINT NOT NULL, currency TEXT NOT NULL, vat_rate TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE invoices (invoice_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, contract_id TEXT NOT NULL,
       number TEXT NOT NULL, issue_date TEXT NOT NULL, period_start TEXT NOT NULL, period_end TEXT NOT NULL,
       currency TEXT NOT NULL, net_minor BIGINT NOT NULL, vat_minor BIGINT NOT NULL, gross_minor BIGINT NOT NULL,
       status TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE invoice_lines (line_id TEXT PRIMARY KEY, invoice_id TEXT NOT NULL, line_no INTEGER NOT NULL,
       tariff_id TEXT NOT NULL, description TEXT NOT NULL, quantity TEXT NOT NULL, unit_price_minor BIGINT NOT NULL,
       net_minor BIGINT NOT NULL, vat_rate TEXT NOT NULL, vat_minor BIGINT NOT NULL, gross_minor BIGINT NOT NULL,
       currency TEXT NOT NULL, updated_at TEXT NOT NULL)""",
]
PERIOD = "2026-11"
STAMP = "2026-11-30T10:00:00+00:00"
# invoice_id -> (customer, contract, number, issue date, currency, status, lines: (tariff, minutes, price, rate))
INVOICES = {
    "IN001": ("C1", "K1", "БЛ-000001", "2026-11-01", "RUB", "issued", [("RU-AUDIO", "100", 150, "22"),
                                                                        ("RU-VIDEO", "12.5", 350, "22")]),
    "IN002": ("C1", "K1", "БЛ-000002", "2026-11-15", "RUB", "paid", [("RU-INTL", "10", 900, "0")]),
    "IN003": ("C2", "K2", "LLK2026000000001", "2026-11-01", "TRY", "issued", [("TR-AUDIO", "1629.5", 60, "20")]),
    "IN004": ("C1", "K1", "БЛ-000003", "2026-11-20", "RUB", "cancelled", [("RU-AUDIO", "5", 150, "22")]),
    "IN005": ("C1", "K1", "БЛ-DRAFT", "2026-11-30", "RUB", "draft", [("RU-AUDIO", "7", 150, "22")]),
    "IN006": ("C1", "K1", "БЛ-000004", "2026-10-31", "RUB", "issued", [("RU-AUDIO", "9", 150, "22")]),
    "IN007": ("C2", "K2", "LLK2026000000002", "2026-11-02", "TRY", "issued", [("TR-AUDIO", "3", 60, "18.5")]),
}
SENT = ("IN001", "IN002", "IN003", "IN004")  # what November's message carries
HELD = "IN007"  # its VAT rate is no value of 1C's СтавкиНДС


def _vat(net: int, rate: str) -> int:
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(net) * Decimal(rate) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def billing_world(path: Path, many: int = 0, lines_each: int = 5) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for ddl in DDL:
            conn.exec_driver_sql(ddl)
        conn.execute(sa.text("INSERT INTO customers VALUES (:i, :n, :c, :k, :t, :p, :u)"), [
            {"i": "C1", "n": "ООО «Ромашка»", "c": "RU", "k": "company", "t": "7707083893", "p": "773601001",
             "u": STAMP},
            {"i": "C2", "n": "Anadolu Telekom A.Ş.", "c": "TR", "k": "company", "t": "1234567890", "p": None,
             "u": STAMP}])
        conn.execute(sa.text("INSERT INTO contracts VALUES (:i, :c, :n, '2026-01-10', :cur, 'active', :u)"), [
            {"i": "K1", "c": "C1", "n": "Д-2026/01", "cur": "RUB", "u": STAMP},
            {"i": "K2", "c": "C2", "n": "S-2026/07", "cur": "TRY", "u": STAMP}])
        conn.execute(sa.text("INSERT INTO tariffs VALUES (:i, :n, 'minute', :p, :c, :r, :u)"), [
            {"i": "RU-AUDIO", "n": "Аудиоконференция", "p": 150, "c": "RUB", "r": "22", "u": STAMP},
            {"i": "RU-VIDEO", "n": "Видеоконференция HD", "p": 350, "c": "RUB", "r": "22", "u": STAMP},
            {"i": "RU-INTL", "n": "Международный дозвон (экспорт, НДС 0%)", "p": 900, "c": "RUB", "r": "0",
             "u": STAMP},
            {"i": "TR-AUDIO", "n": "Sesli konferans", "p": 60, "c": "TRY", "r": "20", "u": STAMP}])
        add_invoices(conn, {**INVOICES, **generated(many, lines_each)})
    return engine


def generated(many: int, lines_each: int = 5) -> dict:
    """``many`` issued November invoices of the Russian customer, ``lines_each`` lines each."""
    return {f"BN{n:07d}": ("C1", "K1", f"Б-{n:07d}", f"2026-11-{1 + n % 28:02d}", "RUB", "issued",
                           [("RU-AUDIO", f"{10 + (n + i) % 90}.5", 150, "22") for i in range(lines_each)])
            for n in range(many)}


def add_invoices(conn, invoices: dict) -> None:
    headers, lines = [], []
    for invoice_id, (customer, contract, number, issued, currency, status, rows) in invoices.items():
        totals = [0, 0, 0]
        for line_no, (tariff, minutes, price, rate) in enumerate(rows, start=1):
            from decimal import ROUND_HALF_UP, Decimal

            net = int((Decimal(minutes) * price).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            vat = _vat(net, rate)
            totals = [totals[0] + net, totals[1] + vat, totals[2] + net + vat]
            lines.append({"l": f"{invoice_id}-{line_no:04d}", "i": invoice_id, "n": line_no, "t": tariff,
                          "d": f"{tariff}, ноябрь 2026", "q": minutes, "p": price, "net": net, "r": rate, "v": vat,
                          "g": net + vat, "c": currency, "u": STAMP})
        headers.append({"i": invoice_id, "c": customer, "k": contract, "n": number, "d": issued,
                        "ps": issued[:8] + "01", "pe": issued[:8] + "28", "cur": currency, "net": totals[0],
                        "vat": totals[1], "g": totals[2], "s": status, "u": f"{issued}T05:00:00+00:00"})
    conn.execute(sa.text("INSERT INTO invoices VALUES (:i, :c, :k, :n, :d, :ps, :pe, :cur, :net, :vat, :g, :s, :u)"),
                 headers)
    conn.execute(sa.text("INSERT INTO invoice_lines VALUES (:l, :i, :n, :t, :d, :q, :p, :net, :r, :v, :g, :c, :u)"),
                 lines)
