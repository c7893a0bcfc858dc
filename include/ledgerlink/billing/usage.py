"""Billing's side of conference usage: the contracts' plans and tariffs, the usage rows imported from the bridge,
and the period's invoices and adjustments rating writes.

Identities are derived, never allocated: a usage row's id from its call id, the period's invoice
``UI-<customer>-<YYYYMM>``, its adjustments ``UA-<customer>-<YYYYMM>-<n>`` (adding) and credit notes
``UC-<customer>-<YYYYMM>-<n>`` (taking off, returning the invoice), a line ``<document>-<nnnn>``. A
document is written only while it is a draft; an issued one is never changed (later usage goes to an adjustment).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import sqlalchemy as sa

from ledgerlink.errors import TerminalError
from ledgerlink.usage.profiles import period_bounds
from ledgerlink.usage.rating import RatedLine, Tariff, Tier

DRAFT, ISSUED = "draft", "issued"
INVOICE_PREFIX, ADJUSTMENT_PREFIX, CREDIT_NOTE_PREFIX = "UI-", "UA-", "UC-"
OUR_PREFIXES = (INVOICE_PREFIX, ADJUSTMENT_PREFIX, CREDIT_NOTE_PREFIX)
# SQL: the documents rating writes (drafts it may rewrite, issued ones it never touches).
OURS_SQL = "(invoice_id LIKE 'UI-%' OR invoice_id LIKE 'UA-%' OR invoice_id LIKE 'UC-%')"
_IN_CHUNK = 900  # SQLite's bound on parameters per statement is 999 on old builds


def period_start(period: str) -> date:
    year, month = map(int, period.split("-"))
    return date(year, month, 1)


def period_end(period: str) -> date:
    start = period_start(period)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1) - timedelta(days=1)


# ------------------------------------------------------------------------------------------- plans and tariffs

@dataclass(frozen=True)
class Plan:
    contract_id: str
    tariff_id: str
    valid_from: date
    valid_to: date | None


class Plans:
    """Every contract's conference plan, by customer: which contract and tariff rate a customer's call."""

    def __init__(self, by_customer: dict[str, list[Plan]]):
        self.by_customer = by_customer

    def for_period(self, customer_id: str, period: str) -> Plan | None:
        """The plan in force on the period's first day, else the first one starting within it."""
        start, end = period_start(period), period_end(period)
        plans = self.by_customer.get(customer_id, ())
        for plan in plans:
            if plan.valid_from <= start and (plan.valid_to is None or start < plan.valid_to):
                return plan
        return next((p for p in plans if start <= p.valid_from <= end), None)


def read_plans(engine: sa.Engine) -> Plans:
    query = sa.text("SELECT k.customer_id, p.contract_id, p.tariff_id, p.valid_from, p.valid_to "
                    "FROM contract_plans p JOIN contracts k ON k.contract_id = p.contract_id "
                    "ORDER BY k.customer_id, p.valid_from")
    by_customer: dict[str, list[Plan]] = {}
    with engine.connect() as conn:
        for customer_id, contract_id, tariff_id, valid_from, valid_to in conn.execute(query):
            by_customer.setdefault(customer_id, []).append(Plan(
                contract_id, tariff_id, date.fromisoformat(str(valid_from)),
                date.fromisoformat(str(valid_to)) if valid_to else None))
    return Plans(by_customer)


def vat_rate_for(currency: str, rate: str, period: str) -> Decimal:
    """The tariff's VAT rate in force in the period: Russia's general rate was 20 % until the end of 2025."""
    if currency == "RUB" and rate == "22" and period < "2026-01":
        return Decimal(20)
    return Decimal(rate)


def read_tariffs(engine: sa.Engine, period: str) -> dict[str, Tariff]:
    """The tariffs with plans, as they rate usage of ``period``."""
    with engine.connect() as conn:
        tiers: dict[str, list[Tier]] = {}
        for tariff_id, from_minutes, price in conn.execute(sa.text(
                "SELECT tariff_id, from_minutes, price_per_minute FROM tariff_tiers ORDER BY tariff_id, from_minutes")):
            tiers.setdefault(tariff_id, []).append(Tier(int(from_minutes), Decimal(str(price))))
        out = {}
        for row in conn.execute(sa.text(
                "SELECT t.tariff_id, t.name, t.currency, t.vat_rate, p.billing_increment_seconds, p.included_minutes,"
                " p.minimum_charge_minor, p.rounding FROM tariffs t JOIN tariff_plans p ON p.tariff_id = t.tariff_id")):
            out[row.tariff_id] = Tariff(row.tariff_id, row.name, row.currency,
                                        vat_rate_for(row.currency, str(row.vat_rate), period),
                                        int(row.billing_increment_seconds), int(row.included_minutes),
                                        int(row.minimum_charge_minor), row.rounding, tuple(tiers.get(row.tariff_id, ())))
    return out


def negotiated_prices(engine: sa.Engine, period: str) -> dict[tuple[str, str], Decimal]:
    """(contract, tariff) -> the negotiated price per minute in force on the period's first day (major units)."""
    start = period_start(period).isoformat()
    prices: dict[tuple[str, str], tuple[str, Decimal]] = {}
    with engine.connect() as conn:
        for contract_id, tariff_id, price_minor, valid_from in conn.execute(sa.text(
                "SELECT contract_id, tariff_id, price_minor, valid_from FROM contract_rates WHERE valid_from <= :start"),
                {"start": start}):
            key = (contract_id, tariff_id)
            if key not in prices or str(valid_from) > prices[key][0]:
                prices[key] = (str(valid_from), Decimal(int(price_minor)) / 100)
    return {key: price for key, (_, price) in prices.items()}


# ------------------------------------------------------------------------------------------- usage rows

def usage_id(call_id: str) -> int:
    """A usage row's id, derived from its call id (63 bits of its SHA-256): the same call is always the same row."""
    return int.from_bytes(hashlib.sha256(call_id.encode("utf-8")).digest()[:8], "big") >> 1


def call_ids_taken(engine: sa.Engine, call_ids: Sequence[str], *, other_than_file: str) -> set[str]:
    """Which of these call ids billing already holds from another file (or from billing's own usage)."""
    found: set[str] = set()
    postgres = engine.dialect.name == "postgresql"
    # PostgreSQL takes a whole array as one parameter (one round trip per 100,000 ids, not one per 900)
    chunk_size = 100_000 if postgres else _IN_CHUNK
    condition = "call_id = ANY(:ids)" if postgres else "call_id IN :ids"
    query = sa.text(f"SELECT call_id FROM usage WHERE {condition} AND (source_file IS NULL OR source_file <> :name)")
    if not postgres:
        query = query.bindparams(sa.bindparam("ids", expanding=True))
    with engine.connect() as conn:
        for start in range(0, len(call_ids), chunk_size):
            chunk = list(call_ids[start:start + chunk_size])
            found.update(r[0] for r in conn.execute(query, {"ids": chunk, "name": other_than_file}))
    return found


USAGE_COLUMNS = ("usage_id", "customer_id", "contract_id", "tariff_id", "call_id", "started_at", "duration_seconds",
                 "participants", "source_file")


def replace_file_usage(engine: sa.Engine, file_name: str, frame) -> int:
    """In one transaction: forget the usage billing holds from ``file_name`` (a first take holds none; a corrected
    file replaces the first one's) and insert the calls of ``frame`` (a DataFrame with ``USAGE_COLUMNS``). A rerun
    gives the same rows. PostgreSQL (psycopg 3) takes them as one CSV ``COPY`` written by Arrow, no Python per row."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM usage WHERE source_file = :name"), {"name": file_name})
        if not len(frame):
            return 0
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            import io

            import pyarrow as pa
            import pyarrow.csv as pv

            buffer = io.BytesIO()
            pv.write_csv(pa.Table.from_pandas(frame[list(USAGE_COLUMNS)], preserve_index=False), buffer,
                         write_options=pv.WriteOptions(include_header=False))
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(f"COPY usage ({', '.join(USAGE_COLUMNS)}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(buffer.getbuffer())
        else:
            records = frame[list(USAGE_COLUMNS)].astype(object).where(frame[list(USAGE_COLUMNS)].notna(), None)
            conn.execute(sa.text(f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES "
                                 f"({', '.join(':' + c for c in USAGE_COLUMNS)})"),
                         records.to_dict("records"))
    return len(frame)


@dataclass(frozen=True)
class AccountUsage:
    customer_id: str
    contract_id: str
    tariff_id: str
    seconds: int  # billed participant-seconds (each call rounded up to the tariff's increment)
    calls: int


def period_usage(engine: sa.Engine, period: str, customer_ids: Sequence[str] | None = None) -> list[AccountUsage]:
    """The period's imported usage per account, contract and tariff, each call rounded up to its tariff's billing
    increment before the sum (integer SQL, the same on SQLite and PostgreSQL)."""
    low, high = period_bounds(period)
    where = ""
    params: dict = {"low": low, "high": high}
    if customer_ids is not None:
        where = " AND u.customer_id IN :customers"
        params["customers"] = list(customer_ids)
    query = sa.text(
        "SELECT u.customer_id, u.contract_id, u.tariff_id, "
        " SUM(((u.duration_seconds + p.billing_increment_seconds - 1) / p.billing_increment_seconds)"
        "     * p.billing_increment_seconds * u.participants), COUNT(*) "
        "FROM usage u JOIN tariff_plans p ON p.tariff_id = u.tariff_id "
        "WHERE u.source_file IS NOT NULL AND u.started_at >= :low AND u.started_at < :high" + where +
        " GROUP BY u.customer_id, u.contract_id, u.tariff_id ORDER BY u.customer_id, u.tariff_id")
    if customer_ids is not None:
        query = query.bindparams(sa.bindparam("customers", expanding=True))
    with engine.connect() as conn:
        return [AccountUsage(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in conn.execute(query, params)]


# ------------------------------------------------------------------------------------------- documents

@dataclass(frozen=True)
class Document:
    invoice_id: str
    status: str
    lines: tuple[RatedLine, ...]
    ours: bool  # written by rating (UI-/UA-/UC-), or billing's own invoice for the period


def period_documents(conn: sa.Connection, customer_id: str, period: str) -> list[Document]:
    """The customer's documents for the period: billing's own invoice (if it made one), then ours in order."""
    start = period_start(period).isoformat()
    docs = []
    rows = conn.execute(sa.text("SELECT invoice_id, status FROM invoices WHERE customer_id = :c AND period_start = :s "
                                "ORDER BY invoice_id"), {"c": customer_id, "s": start}).all()
    for invoice_id, status in rows:
        ours = invoice_id.startswith(OUR_PREFIXES)
        lines = ()
        if ours:
            lines = tuple(_line_of(r, credit_note=invoice_id.startswith(CREDIT_NOTE_PREFIX)) for r in conn.execute(sa.text(
                "SELECT tariff_id, description, quantity, unit_price_minor, net_minor, vat_rate, vat_minor, line_id "
                "FROM invoice_lines WHERE invoice_id = :i ORDER BY line_no"), {"i": invoice_id}))
        docs.append(Document(invoice_id, status, lines, ours))
    docs.sort(key=lambda d: (d.ours, d.invoice_id.startswith((ADJUSTMENT_PREFIX, CREDIT_NOTE_PREFIX)),
                             _adjustment_no(d.invoice_id), d.invoice_id))
    return docs


def _adjustment_no(invoice_id: str) -> int:
    return int(invoice_id.rsplit("-", 1)[1]) if invoice_id.startswith((ADJUSTMENT_PREFIX, CREDIT_NOTE_PREFIX)) else 0


# A line's rating key travels in its description's first bracket: "[tier-1] ..."; billing has no column for it.
def _line_of(row, *, credit_note: bool = False) -> RatedLine:
    """A line as rating reasons about it: a credit note's quantities are differences, so negative (billing
    keeps them positive, as UBL-TR's IADE does, and only the amounts negative)."""
    tariff_id, description, quantity, unit_price_minor, net, vat_rate, vat, _ = row
    key, _, text = description.partition("] ")
    return RatedLine(key.lstrip("["), tariff_id, text, -Decimal(quantity) if credit_note else Decimal(quantity),
                     Decimal(int(unit_price_minor)) / 100, int(net), Decimal(vat_rate), int(vat))


def invoice_id_for(customer_id: str, period: str) -> str:
    return f"{INVOICE_PREFIX}{customer_id}-{period.replace('-', '')}"


def adjustment_id_for(customer_id: str, period: str, number: int, *, credit_note: bool = False) -> str:
    """An adjustment after the period's invoice was issued: ``UA-`` adds to it, ``UC-`` (a credit note) takes off."""
    prefix = CREDIT_NOTE_PREFIX if credit_note else ADJUSTMENT_PREFIX
    return f"{prefix}{customer_id}-{period.replace('-', '')}-{number:02d}"


def _line_rows(invoice_id: str, lines: Sequence[RatedLine], currency: str, updated_at: str) -> list[dict]:
    credit_note = invoice_id.startswith(CREDIT_NOTE_PREFIX)  # amounts negative, quantities as returned (positive)
    rows = []
    for line_no, line in enumerate(lines, 1):
        # billing keeps unit prices in whole minor units; the exact price stays in the description
        unit_minor = int((line.unit_price * 100).to_integral_value())
        rows.append({"line_id": f"{invoice_id}-{line_no:04d}", "invoice_id": invoice_id, "line_no": line_no,
                     "tariff_id": line.tariff_id,
                     "description": f"[{line.key}] {line.description}",
                     "quantity": str(-line.quantity if credit_note else line.quantity), "unit_price_minor": unit_minor, "net_minor": line.net_minor,
                     "vat_rate": format(line.vat_rate.normalize(), "f"),
                     "vat_minor": line.vat_minor, "gross_minor": line.gross_minor, "currency": currency,
                     "updated_at": updated_at})
    return rows


def _same_lines(old: Sequence[RatedLine], new: Sequence[RatedLine]) -> bool:
    strip = lambda lines: [(l.key, l.tariff_id, l.quantity, l.net_minor, l.vat_minor, l.vat_rate) for l in lines]  # noqa: E731
    return strip(old) == strip(new)


def write_draft(conn: sa.Connection, *, invoice_id: str, customer_id: str, contract_id: str, period: str,
                currency: str, lines: Sequence[RatedLine], existing: Document | None, now: datetime,
                credits_invoice_id: str | None = None) -> str:
    """Create or rewrite a draft document with these lines; returns what happened: ``created``, ``updated``,
    ``unchanged`` or ``deleted`` (a draft adjustment with nothing left to adjust). Refuses to touch an issued one.
    ``credits_invoice_id``: the document is a credit note (its lines negative) returning that invoice."""
    if existing is not None and existing.status != DRAFT:
        raise TerminalError(f"billing document {invoice_id} is {existing.status}: rating never changes an issued "
                            f"document (later usage goes to an adjustment)")
    if existing is not None and _same_lines(existing.lines, lines):
        return "unchanged"
    stamp = now.astimezone(timezone.utc).isoformat()
    conn.execute(sa.text("DELETE FROM invoice_lines WHERE invoice_id = :i"), {"i": invoice_id})
    if not lines:  # nothing left to bill in this document (usage corrected away, or nothing to adjust)
        conn.execute(sa.text("DELETE FROM invoices WHERE invoice_id = :i AND status = :d"), {"i": invoice_id, "d": DRAFT})
        return "deleted" if existing is not None else "unchanged"
    net = sum(l.net_minor for l in lines)
    vat = sum(l.vat_minor for l in lines)
    values = {"i": invoice_id, "c": customer_id, "k": contract_id, "num": "",
              "issue": (period_end(period) + timedelta(days=1)).isoformat(),
              "ps": period_start(period).isoformat(), "pe": period_end(period).isoformat(), "cur": currency,
              "net": net, "vat": vat, "gross": net + vat, "st": DRAFT, "up": stamp, "credits": credits_invoice_id}
    if existing is None:
        conn.execute(sa.text(
            "INSERT INTO invoices (invoice_id, customer_id, contract_id, number, issue_date, period_start, period_end,"
            " currency, net_minor, vat_minor, gross_minor, status, updated_at, credits_invoice_id) VALUES (:i, :c,"
            " :k, :num, :issue, :ps, :pe, :cur, :net, :vat, :gross, :st, :up, :credits)"), values)
    else:
        changed = conn.execute(sa.text(
            "UPDATE invoices SET contract_id = :k, currency = :cur, net_minor = :net, vat_minor = :vat,"
            " gross_minor = :gross, updated_at = :up, credits_invoice_id = :credits"
            " WHERE invoice_id = :i AND status = :st"), values).rowcount
        if not changed:  # issued between our read and this write
            raise TerminalError(f"billing document {invoice_id} was issued while it was being rated; rate again")
    rows = _line_rows(invoice_id, lines, currency, stamp)
    if rows:
        conn.execute(sa.text(
            "INSERT INTO invoice_lines (line_id, invoice_id, line_no, tariff_id, description, quantity,"
            " unit_price_minor, net_minor, vat_rate, vat_minor, gross_minor, currency, updated_at) VALUES (:line_id,"
            " :invoice_id, :line_no, :tariff_id, :description, :quantity, :unit_price_minor, :net_minor, :vat_rate,"
            " :vat_minor, :gross_minor, :currency, :updated_at)"), rows)
    return "created" if existing is None else "updated"


def issue_drafts(engine: sa.Engine, period: str, now: datetime) -> list[tuple[str, str]]:
    """Issue our draft documents of the period and of earlier ones (late usage for a period closed before: its
    invoice or adjustment goes out with this closing): each gets the next number of its country's series and status
    issued. Already issued ones keep theirs: issuing twice changes nothing. Returns (document, number) issued."""
    issued = []
    stamp = now.astimezone(timezone.utc).isoformat()
    issue_day = period_end(period) + timedelta(days=1)
    with engine.begin() as conn:
        drafts = conn.execute(sa.text(
            "SELECT i.invoice_id, c.country FROM invoices i JOIN customers c ON c.customer_id = i.customer_id "
            "WHERE i.period_start <= :ps AND i.status = :d AND (i.invoice_id LIKE 'UI-%' OR i.invoice_id LIKE 'UA-%'"
            " OR i.invoice_id LIKE 'UC-%') "
            "ORDER BY i.period_start, i.invoice_id"), {"ps": period_start(period).isoformat(), "d": DRAFT}).all()
        for invoice_id, country in drafts:
            number = _next_number(conn, country, issue_day)
            conn.execute(sa.text("UPDATE invoices SET status = :s, number = :n, issue_date = :day, updated_at = :up "
                                 "WHERE invoice_id = :i AND status = :d"),
                         {"s": ISSUED, "n": number, "day": issue_day.isoformat(), "up": stamp, "i": invoice_id,
                          "d": DRAFT})
            issued.append((invoice_id, number))
    return issued


def _next_number(conn: sa.Connection, country: str, issue_day: date) -> str:
    """The series' next number (GİB style for Turkey: series, year, nine digits; ``БЛ-`` for Russia)."""
    if country == "TR":
        prefix = f"LLK{issue_day.year}"
        last = conn.scalar(sa.text("SELECT MAX(number) FROM invoices WHERE number LIKE :p"), {"p": prefix + "%"})
        return f"{prefix}{(int(last[len(prefix):]) if last else 0) + 1:09d}"
    last = conn.scalar(sa.text("SELECT MAX(number) FROM invoices WHERE number LIKE :p"), {"p": "БЛ-%"})
    return f"БЛ-{(int(last[3:]) if last else 0) + 1:06d}"


def customer_currencies(engine: sa.Engine, customer_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(customer_ids))
    out = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), _IN_CHUNK):
            query = sa.text("SELECT customer_id, currency FROM customers WHERE customer_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            out.update({r[0]: r[1] for r in conn.execute(query, {"ids": ids[start:start + _IN_CHUNK]})})
    return out
