"""The ledger's e-invoice register: each invoice's ETTN and number (fixed before its first send), where it went,
every attempt, and where it stands at GİB.

Numbers are gapless per series and year: a series' counter row is locked (``UPDATE … RETURNING``: a row lock on
PostgreSQL, the database's write lock on SQLite) before the batch's invoices are checked and numbered, and the
counter moves in the same transaction as the rows that take its numbers. Two runs numbering at once therefore
wait for each other, an invoice numbered by one is skipped by the other, and a crash rolls back numbers and rows
together: no gap, no number twice. A number, once taken, is never given again (a rejected invoice keeps it).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import orm

from ledgerlink.ledger.models import Base, _chunks, serial_id, utcnow

# Where an invoice stands: numbered (never sent), in flight or in doubt (sent, answer unknown), queued at GİB
# (1000), then final: accepted (1300) or rejected (GİB or the integrator refused it; the number stays used).
NUMBERED, SENT, IN_DOUBT, QUEUED, ACCEPTED, REJECTED = "numbered", "sent", "in_doubt", "queued", "accepted", "rejected"
FINAL_STATES = (ACCEPTED, REJECTED)
UNFINISHED_STATES = (NUMBERED, SENT, IN_DOUBT)
NUMBERS_PER_TRANSACTION = 500


class EInvoiceSeries(Base):
    __tablename__ = "einvoice_series"
    series: orm.Mapped[str] = orm.mapped_column(sa.String(3), primary_key=True)
    year: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
    last_sequence: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)


class EInvoice(Base):
    __tablename__ = "einvoices"
    invoice_id: orm.Mapped[str] = orm.mapped_column(sa.String(200), primary_key=True)  # billing's key
    ettn: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    number: orm.Mapped[str] = orm.mapped_column(sa.String(16), unique=True)
    series: orm.Mapped[str] = orm.mapped_column(sa.String(3))
    year: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    sequence: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    document: orm.Mapped[str] = orm.mapped_column(sa.String(10))  # efatura / earsiv
    profile: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    type_code: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    recipient_id: orm.Mapped[str] = orm.mapped_column(sa.String(11))
    currency: orm.Mapped[str] = orm.mapped_column(sa.String(3))
    payable: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(18, 2))
    primary_integrator: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    fallback_integrator: orm.Mapped[str | None] = orm.mapped_column(sa.String(50))
    state: orm.Mapped[str] = orm.mapped_column(sa.String(20), index=True)
    carrier: orm.Mapped[str | None] = orm.mapped_column(sa.String(50))  # the integrator that holds it
    # A send whose answer never came: that integrator may hold the invoice; nothing goes elsewhere until it says.
    in_doubt_at: orm.Mapped[str | None] = orm.mapped_column(sa.String(50))
    # Integrators that said definitely "not received" (comma-separated): only then may another one carry it.
    not_received_by: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    gib_status: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    integrator_code: orm.Mapped[str | None] = orm.mapped_column(sa.String(50))
    message: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250))  # the run that numbered it
    numbered_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    updated_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    final_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))


class EInvoiceAttempt(Base):
    __tablename__ = "einvoice_attempts"
    id: orm.Mapped[int] = serial_id()
    invoice_id: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    integrator: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    action: orm.Mapped[str] = orm.mapped_column(sa.String(10))  # send / status
    run_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(250))
    started_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    finished_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))
    outcome: orm.Mapped[str] = orm.mapped_column(sa.String(30))  # "started" until the answer (or its absence)
    http_status: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    integrator_code: orm.Mapped[str | None] = orm.mapped_column(sa.String(50))
    gib_status: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    message: orm.Mapped[str | None] = orm.mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_einvoice_attempts_invoice", "invoice_id"),)


@dataclass(frozen=True)
class ToNumber:
    """An invoice about to get its ETTN and number: everything the register keeps about it."""

    invoice_id: str
    series: str
    year: int
    ettn: str
    document: str
    profile: str
    type_code: str
    recipient_id: str
    currency: str
    payable: Decimal
    primary_integrator: str
    fallback_integrator: str | None


def format_number(series: str, year: int, sequence: int) -> str:
    """GİB's 16 characters: the series (3), the year (4), the sequence (9 digits)."""
    if sequence > 999_999_999:
        raise OverflowError(f"series {series} has used all 999,999,999 numbers of {year}")
    return f"{series}{year:04d}{sequence:09d}"


class EInvoiceRegister:
    """The e-invoice tables of the ledger (``Ledger.engine``). Every method commits its own transaction."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # numbering -------------------------------------------------------------------------------------------------
    def number(self, invoices: Sequence[ToNumber], run_id: str) -> list[str]:
        """Give each invoice not yet registered its number from its series and year, in the order given (issue
        order), together with its ETTN. Returns the invoice ids numbered now; those numbered before keep theirs."""
        numbered: list[str] = []
        groups: dict[tuple[str, int], list[ToNumber]] = {}
        for invoice in invoices:
            groups.setdefault((invoice.series, invoice.year), []).append(invoice)
        for (series, year), group in groups.items():
            self._ensure_counter(series, year)
            for batch in _chunks(group, NUMBERS_PER_TRANSACTION):
                numbered += self._number_batch(series, year, batch, run_id)
        return numbered

    def _ensure_counter(self, series: str, year: int) -> None:
        insert = (sa.dialects.postgresql.insert if self.engine.dialect.name == "postgresql"
                  else sa.dialects.sqlite.insert)(EInvoiceSeries)
        with self.engine.begin() as conn:
            conn.execute(insert.values(series=series, year=year, last_sequence=0).on_conflict_do_nothing())

    def _number_batch(self, series: str, year: int, batch: Sequence[ToNumber], run_id: str) -> list[str]:
        now = utcnow()
        with self.engine.begin() as conn:
            # The lock first: a write to the counter row (PostgreSQL: its row lock; SQLite: the write lock) makes a
            # concurrent numberer of the same series wait here until this transaction ends.
            last = conn.scalar(sa.update(EInvoiceSeries).where(
                EInvoiceSeries.series == series, EInvoiceSeries.year == year)
                .values(last_sequence=EInvoiceSeries.last_sequence).returning(EInvoiceSeries.last_sequence))
            known = set(conn.scalars(sa.select(EInvoice.invoice_id).where(
                EInvoice.invoice_id.in_([i.invoice_id for i in batch]))))
            fresh = [i for i in dict((i.invoice_id, i) for i in batch).values() if i.invoice_id not in known]
            if not fresh:
                return []
            rows = []
            for offset, invoice in enumerate(fresh, start=1):
                sequence = last + offset
                rows.append({
                    "invoice_id": invoice.invoice_id, "ettn": invoice.ettn,
                    "number": format_number(series, year, sequence), "series": series, "year": year,
                    "sequence": sequence, "document": invoice.document, "profile": invoice.profile,
                    "type_code": invoice.type_code, "recipient_id": invoice.recipient_id,
                    "currency": invoice.currency, "payable": invoice.payable,
                    "primary_integrator": invoice.primary_integrator,
                    "fallback_integrator": invoice.fallback_integrator, "state": NUMBERED, "not_received_by": "",
                    "run_id": run_id, "numbered_at": now, "updated_at": now})
            conn.execute(sa.insert(EInvoice), rows)
            conn.execute(sa.update(EInvoiceSeries).where(EInvoiceSeries.series == series, EInvoiceSeries.year == year)
                         .values(last_sequence=last + len(fresh)))
        return [i.invoice_id for i in fresh]

    # reading ---------------------------------------------------------------------------------------------------
    def invoices(self, *, states: Iterable[str] | None = None, invoice_ids: Iterable[str] | None = None) -> list[dict]:
        query = sa.select(*EInvoice.__table__.c).order_by(EInvoice.series, EInvoice.year, EInvoice.sequence)
        if states is not None:
            query = query.where(EInvoice.state.in_(list(states)))
        if invoice_ids is not None:
            query = query.where(EInvoice.invoice_id.in_(list(invoice_ids)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def invoice(self, invoice_id: str) -> dict | None:
        found = self.invoices(invoice_ids=[invoice_id])
        return found[0] if found else None

    def known_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(sa.select(EInvoice.invoice_id)))

    def attempts(self, invoice_id: str | None = None) -> list[dict]:
        query = sa.select(*EInvoiceAttempt.__table__.c).order_by(EInvoiceAttempt.id)
        if invoice_id is not None:
            query = query.where(EInvoiceAttempt.invoice_id == invoice_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def series_counters(self) -> dict[tuple[str, int], int]:
        with self.engine.connect() as conn:
            return {(s, y): n for s, y, n in conn.execute(
                sa.select(EInvoiceSeries.series, EInvoiceSeries.year, EInvoiceSeries.last_sequence))}

    # recording -------------------------------------------------------------------------------------------------
    def begin_attempt(self, invoice_id: str, integrator: str, action: str, run_id: str | None) -> int:
        """Record an attempt before its request leaves, so a crash mid-request still shows it."""
        with self.engine.begin() as conn:
            return conn.execute(sa.insert(EInvoiceAttempt).values(
                invoice_id=invoice_id, integrator=integrator, action=action, run_id=run_id, started_at=utcnow(),
                outcome="started").returning(EInvoiceAttempt.id)).scalar_one()

    def finish_attempt(self, attempt_id: int, outcome: str, *, http_status: int | None = None,
                       integrator_code: str | None = None, gib_status: int | None = None,
                       message: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(EInvoiceAttempt).where(EInvoiceAttempt.id == attempt_id).values(
                finished_at=utcnow(), outcome=outcome, http_status=http_status, integrator_code=integrator_code,
                gib_status=gib_status, message=message))

    def update(self, invoice_id: str, **values) -> None:
        now = utcnow()
        values["updated_at"] = now
        if values.get("state") in FINAL_STATES:
            values.setdefault("final_at", now)
        with self.engine.begin() as conn:
            conn.execute(sa.update(EInvoice).where(EInvoice.invoice_id == invoice_id).values(**values))

