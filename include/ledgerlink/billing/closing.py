"""A period's closing documents as billing holds them: issued (and since paid) or cancelled invoices with their
lines, customer and contract, read as a stream of documents (memory follows one document, not the period).

Drafts never leave billing: the usage rating rewrites them nightly until month-end issues them.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import sqlalchemy as sa

ISSUED, PAID, CANCELLED = "issued", "paid", "cancelled"
CLOSING_STATUSES = (ISSUED, PAID, CANCELLED)
CENT = Decimal("0.01")
FETCH_ROWS = 5_000  # rows per round trip of the streamed query

_COLUMNS = """
    i.invoice_id, i.number, i.issue_date, i.period_start, i.period_end, i.currency, i.net_minor, i.vat_minor,
    i.gross_minor, i.status, c.customer_id, c.legal_name, c.country, c.entity_kind, c.tax_id, c.kpp,
    k.contract_id, k.number AS contract_number, k.signed_on, k.currency AS contract_currency,
    l.line_no, l.tariff_id, t.name AS tariff_name, t.unit AS tariff_unit, l.description, l.quantity,
    l.unit_price_minor, l.net_minor AS line_net, l.vat_rate, l.vat_minor AS line_vat, l.gross_minor AS line_gross"""
_FROM = """
    FROM invoices i
    JOIN customers c ON c.customer_id = i.customer_id
    LEFT JOIN contracts k ON k.contract_id = i.contract_id
    LEFT JOIN invoice_lines l ON l.invoice_id = i.invoice_id
    LEFT JOIN tariffs t ON t.tariff_id = l.tariff_id"""
# The period's documents by their date, and earlier ones changed since the period began (an invoice of October
# cancelled in November travels with November's message).
_IN_SCOPE = ("i.status IN ('issued', 'paid', 'cancelled') AND ("
             "(i.issue_date >= :start AND i.issue_date < :end) OR (i.issue_date < :start AND i.updated_at >= :start))")


def money(minor: int | None) -> Decimal | None:
    """Minor units (kopecks, kuruş) as an exact Decimal of the major unit."""
    return None if minor is None else (Decimal(int(minor)) * CENT)


@dataclass
class ClosingLine:
    line_no: int
    tariff_id: str
    tariff_name: str
    unit: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Decimal
    vat_rate: str
    vat: Decimal
    gross: Decimal


@dataclass
class ClosingDocument:
    invoice_id: str
    number: str
    issue_date: str  # YYYY-MM-DD
    period_start: str
    period_end: str
    currency: str
    net: Decimal
    vat: Decimal
    gross: Decimal
    status: str
    customer: dict
    contract: dict | None
    lines: list[ClosingLine] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED


def _iso(value) -> str:
    return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]


def _documents(rows: Iterable) -> Iterator[ClosingDocument]:
    """Consecutive rows of one invoice (ordered by invoice, line) into one document."""
    current: ClosingDocument | None = None
    for r in rows:
        if current is None or current.invoice_id != r.invoice_id:
            if current is not None:
                yield current
            contract = None if r.contract_id is None else {
                "contract_id": r.contract_id, "number": r.contract_number, "signed_on": _iso(r.signed_on),
                "currency": r.contract_currency}
            current = ClosingDocument(
                invoice_id=r.invoice_id, number=r.number, issue_date=_iso(r.issue_date),
                period_start=_iso(r.period_start), period_end=_iso(r.period_end), currency=r.currency,
                net=money(r.net_minor), vat=money(r.vat_minor), gross=money(r.gross_minor), status=r.status,
                customer={"customer_id": r.customer_id, "legal_name": r.legal_name, "country": r.country,
                          "entity_kind": r.entity_kind, "tax_id": r.tax_id, "kpp": r.kpp},
                contract=contract)
        if r.line_no is not None:
            current.lines.append(ClosingLine(
                line_no=int(r.line_no), tariff_id=r.tariff_id, tariff_name=r.tariff_name or r.tariff_id,
                unit=r.tariff_unit or "", description=r.description, quantity=Decimal(str(r.quantity)),
                unit_price=money(r.unit_price_minor), net=money(r.line_net), vat_rate=str(r.vat_rate),
                vat=money(r.line_vat), gross=money(r.line_gross)))
    if current is not None:
        yield current


def period_bounds(period: str) -> tuple[str, str]:
    """``2026-11`` -> ("2026-11-01", "2026-12-01")."""
    year, month = (int(p) for p in period.split("-"))
    start = date(year, month, 1)
    end = date(year + (month == 12), month % 12 + 1, 1)
    return start.isoformat(), end.isoformat()


def closing_documents(billing: sa.Engine, period: str, also: Iterable[str] = ()) -> Iterator[ClosingDocument]:
    """The period's closing documents in invoice order, streamed; then ``also`` (keys still waiting for an
    acknowledgement from an earlier message) that are not among them, in the same order."""
    start, end = period_bounds(period)
    params = {"start": start, "end": end}
    with billing.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(sa.text(
            f"SELECT {_COLUMNS} {_FROM} WHERE {_IN_SCOPE} ORDER BY i.invoice_id, l.line_no"), params)
        yield from _documents(result)
        extra = sorted(set(also))
        for offset in range(0, len(extra), 500):
            chunk = extra[offset:offset + 500]
            names = {f"k{n}": key for n, key in enumerate(chunk)}
            result = conn.execute(sa.text(
                f"SELECT {_COLUMNS} {_FROM} WHERE i.invoice_id IN ({', '.join(':' + n for n in names)}) "
                f"AND i.status IN ('issued', 'paid', 'cancelled') AND NOT ({_IN_SCOPE}) "
                f"ORDER BY i.invoice_id, l.line_no"), {**params, **names})
            yield from _documents(result)
