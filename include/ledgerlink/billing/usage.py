"""Billing's side of conference usage: the contracts' plans and tariffs, the usage rows imported from the bridge,
and the period's invoices and adjustments rating writes.

Identities are derived, never allocated: a usage row's id from its call id, the period's invoice
``UI-<customer>-<YYYYMM>``, its adjustments ``UA-<customer>-<YYYYMM>-<n>`` (adding) and credit notes
``UC-<customer>-<YYYYMM>-<n>`` (taking off, returning the invoice), a line ``<document>-<nnnn>``. A
document is written only while it is a draft; an issued one is never changed (later usage goes to an adjustment).
"""
from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
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
    with engine.connect() as conn:
        return _call_ids_taken(conn, call_ids, other_than_file=other_than_file,
                               postgres=engine.dialect.name == "postgresql")


def _call_ids_taken(conn: sa.Connection, call_ids: Sequence[str], *, other_than_file: str, postgres: bool) -> set[str]:
    found: set[str] = set()
    if postgres:
        # The ids go as one text, split by the server: psycopg adapting a list of 100,000 strings as an array costs
        # ten times the query (measured: 3.4 s of 3.7 s per million ids). A call id cannot hold a line end (the
        # reader refuses it); were one to, its pieces would only be looked up as well: rows are matched on their
        # whole call id. First one range scan between the ids' least and greatest (in the column's collation):
        # a bridge numbers its calls, so another file's ids seldom fall inside, and the scan returns only what
        # may match (0.09 s for 150,000 ids against a million held, where probing each id costs 0.7 s of the
        # server's time, beside the COPY). Should the range hold more rows than there are ids, each id is probed.
        ranged = sa.text(
            "WITH ids AS (SELECT unnest(string_to_array(:ids, E'\\n')) AS id), "
            "bounds AS (SELECT min(id) AS low, max(id) AS high FROM ids) "
            "SELECT u.call_id FROM usage u, bounds b WHERE u.call_id BETWEEN b.low AND b.high "
            "AND (u.source_file IS NULL OR u.source_file <> :name) LIMIT :cap")
        probed = sa.text("SELECT call_id FROM usage WHERE call_id = ANY(string_to_array(:ids, E'\\n')) "
                         "AND (source_file IS NULL OR source_file <> :name)")
        for start in range(0, len(call_ids), 200_000):
            chunk = call_ids[start:start + 200_000]
            params = {"ids": "\n".join(chunk), "name": other_than_file}
            in_range = [r[0] for r in conn.execute(ranged, {**params, "cap": len(chunk) + 1})]
            if len(in_range) <= len(chunk):
                found.update(set(in_range).intersection(chunk))
            else:
                found.update(r[0] for r in conn.execute(probed, params))
        return found
    query = sa.text("SELECT call_id FROM usage WHERE call_id IN :ids AND (source_file IS NULL OR source_file <> :name)"
                    ).bindparams(sa.bindparam("ids", expanding=True))
    for start in range(0, len(call_ids), _IN_CHUNK):
        chunk = list(call_ids[start:start + _IN_CHUNK])
        found.update(r[0] for r in conn.execute(query, {"ids": chunk, "name": other_than_file}))
    return found


USAGE_COLUMNS = ("usage_id", "customer_id", "contract_id", "tariff_id", "call_id", "started_at", "duration_seconds",
                 "participants", "source_file")


def replace_file_usage(engine: sa.Engine, file_name: str, frame) -> int:
    """The calls of ``frame`` (a DataFrame with ``USAGE_COLUMNS``) as all the usage billing holds from
    ``file_name``, in one transaction (:func:`file_usage_writer` with a single block)."""
    with file_usage_writer(engine, file_name) as writer:
        writer.write(frame)
    return len(frame)


class DuplicateUsage(TerminalError):
    """Two calls of one file carry the same call id (so the same usage id): the file's transaction is rolled back.
    ``usage_ids``: the ones found twice, when the database named them (PostgreSQL does, SQLite does not)."""

    def __init__(self, file_name: str, usage_ids: Sequence[int] = ()):
        super().__init__(f"{file_name}: a call id occurs twice" + (f" (usage ids {list(usage_ids)[:5]})"
                                                                   if usage_ids else ""))
        self.usage_ids = list(usage_ids)


def usage_ids(call_ids) -> "np.ndarray":
    """:func:`usage_id` of each call id, as an int64 array (one hash call per id: ≈ 0.5 s per million here)."""
    import numpy as np

    sha256 = hashlib.sha256
    return np.fromiter((int.from_bytes(sha256(c.encode("utf-8")).digest()[:8], "big") >> 1 for c in call_ids),
                       dtype=np.int64, count=len(call_ids))


class FileUsageWriter:
    """One file's usage written into billing in one transaction, block by block (see :func:`file_usage_writer`)."""

    def __init__(self, engine: sa.Engine, conn: sa.Connection, file_name: str):
        self.engine, self.conn, self.file_name = engine, conn, file_name
        self.rows = 0
        self._copy = None
        self._stream: contextlib.ExitStack | None = None
        self._sender = None
        self._in_flight = None
        self._reader = None
        self._held: list = []
        self.closed = False
        self.postgres = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"

    def taken_before(self, call_ids: Sequence[str]) -> set[str]:
        """Which of these call ids billing already holds from another file (or from its own usage). On
        PostgreSQL asked on a second connection (the first streams the COPY); another file's rows are committed
        ones either way, and this file's own are excluded by name."""
        if not self.postgres:
            return _call_ids_taken(self.conn, call_ids, other_than_file=self.file_name, postgres=False)
        if self._reader is None:
            self._reader = self.engine.connect()
        return _call_ids_taken(self._reader, call_ids, other_than_file=self.file_name, postgres=True)

    def write(self, frame) -> None:
        """Insert a block's calls (a DataFrame with ``USAGE_COLUMNS``). PostgreSQL takes every block of the file
        through one ``COPY`` stream, as CSV written by Arrow (no Python per row), sent by a thread of its own: the
        server's index upkeep (the load's main cost) runs while the next block is read and gated. One block in
        flight at a time: memory holds two, however far the server lags."""
        if not len(frame):
            return
        self.rows += len(frame)
        if not self.postgres:
            records = frame[list(USAGE_COLUMNS)].astype(object).where(frame[list(USAGE_COLUMNS)].notna(), None)
            try:
                self.conn.execute(sa.text(f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES "
                                          f"({', '.join(':' + c for c in USAGE_COLUMNS)})"), records.to_dict("records"))
            except sa.exc.IntegrityError as e:
                raise DuplicateUsage(self.file_name) from e
            return
        import pyarrow as pa
        import pyarrow.csv as pv

        if self._copy is None:
            from concurrent.futures import ThreadPoolExecutor

            self._stream = contextlib.ExitStack()
            cursor = self._stream.enter_context(self.conn.connection.driver_connection.cursor())
            self._copy = self._stream.enter_context(cursor.copy(
                f"COPY usage ({', '.join(USAGE_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"))
            self._sender = ThreadPoolExecutor(1, thread_name_prefix="usage-copy")
        sink = pa.BufferOutputStream()
        pv.write_csv(pa.Table.from_pandas(frame[list(USAGE_COLUMNS)], preserve_index=False), sink,
                     write_options=pv.WriteOptions(include_header=False))
        self._sent()
        self._in_flight = self._sender.submit(self._copy.write, memoryview(sink.getvalue()))

    def _sent(self) -> None:
        """Wait for the block in flight (its error, if the server refused it, is raised here)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            self._verdict(in_flight.result)

    def _verdict(self, step) -> None:
        import psycopg

        try:
            step()
        except psycopg.errors.UniqueViolation as e:
            found = re.search(r"\(usage_id\)=\((\d+)\)", (e.diag.message_detail or ""))
            raise DuplicateUsage(self.file_name, [int(found.group(1))] if found else []) from e

    def hold(self, ids) -> None:
        """Usage ids of calls held back (not written): a call id twice in the file is found among them too."""
        if len(ids):
            self._held.append(ids)

    def close(self) -> None:
        """End the stream. Raises :class:`DuplicateUsage` for call ids found twice: written twice (the database's
        key refuses the second row), or held back and also written or held back again."""
        import numpy as np

        self.closed = True

        if self._copy is not None:
            try:
                self._sent()
            finally:
                self._sender.shutdown()
            self._copy = None
            self._verdict(self._stream.close)  # the COPY's end: the server's verdict on every row
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if not self._held:
            return
        held = np.concatenate(self._held)
        values, counts = np.unique(held, return_counts=True)
        twice = set(values[counts > 1].tolist())
        query = sa.text("SELECT usage_id FROM usage WHERE source_file = :name AND usage_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True))
        for start in range(0, len(values), _IN_CHUNK):
            chunk = [int(v) for v in values[start:start + _IN_CHUNK]]
            twice.update(r[0] for r in self.conn.execute(query, {"name": self.file_name, "ids": chunk}))
        if twice:
            raise DuplicateUsage(self.file_name, sorted(twice))

    def abort(self) -> None:
        if self._copy is not None:
            if self._in_flight is not None:
                self._in_flight.exception()  # let the sending thread finish before the stream ends
            self._sender.shutdown()
            self._copy = None
            error = RuntimeError("the file's load stopped")
            try:
                self._stream.__exit__(RuntimeError, error, None)  # psycopg ends the COPY as failed
            except Exception:  # noqa: BLE001 - the transaction is being rolled back; the first error is raised
                pass
        if self._reader is not None:
            self._reader.close()
            self._reader = None


@contextlib.contextmanager
def file_usage_writer(engine: sa.Engine, file_name: str) -> Iterator[FileUsageWriter]:
    """A file's usage written in one transaction: the usage billing held from ``file_name`` is forgotten first (a
    first take holds none; a corrected file replaces the first one's), then the caller writes the file's calls block
    by block (and names the ones it held back); when the block ends, a call id found twice raises
    :class:`DuplicateUsage`. Any error rolls the whole file back: a file is loaded whole or not at all, and a
    rerun gives the same rows."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM usage WHERE source_file = :name"), {"name": file_name})
        writer = FileUsageWriter(engine, conn, file_name)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        if not writer.closed:
            writer.close()


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
