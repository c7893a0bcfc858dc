"""Rating: billing's imported usage → each account's invoice for the period, or an adjustment once it is issued.

For every account with usage (or with a draft of ours) in a period, the whole period is rated again from the usage
billing holds (so files split, reordered or corrected give the same invoice). While nothing for the period is
issued, the period's invoice is that rating, as a draft. Once a document for the period is issued (billing's own
invoice, or ours at month-end), it is never changed: the rating less what the issued documents billed goes to an
adjustment document (the open draft one, or a new one), and nothing when they agree. Writing only what differs
makes a rerun change nothing.

Nightly: the periods that received files since they were last rated. Month-end: the period just closed, whose
drafts it then issues.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from ledgerlink.billing.usage import (ADJUSTMENT_PREFIX, CREDIT_NOTE_PREFIX, DRAFT, INVOICE_PREFIX, OURS_SQL,
                                      adjustment_id_for, invoice_id_for, issue_drafts, negotiated_prices, period_documents, period_start, period_usage,
                                      read_tariffs, write_draft)
from ledgerlink.flows.spec import declared
from ledgerlink.ledger import SUCCEEDED, Ledger, UsageFiles
from ledgerlink.usage.profiles import previous_period
from ledgerlink.usage.rating import difference, rate_period, totals

log = logging.getLogger(__name__)

NIGHTLY = declared("usage_rating_nightly", entity="invoice", source="billing", target="billing",
                   carries=("net_minor", "vat_minor", "gross_minor", "status"))
MONTH_END = declared("usage_rating_month_end", entity="invoice", source="billing", target="billing",
                     carries=("net_minor", "vat_minor", "gross_minor", "status"))
INTAKE_FLOW = "bridge_usage_to_billing"
RATING_LEASE = "usage_rating"  # the nightly and month-end runs write the same documents: one at a time


@dataclass
class RatingSummary:
    flow: str
    run_id: str
    periods: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)  # created / updated / unchanged / deleted documents
    by_period: dict[str, dict[str, int]] = field(default_factory=dict)  # the same, per period
    documents: list[dict] = field(default_factory=list)  # each document written: id, kind, totals
    issued: list[tuple[str, str]] = field(default_factory=list)

    def count(self, period: str, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        in_period = self.by_period.setdefault(period, {})
        in_period[outcome] = in_period.get(outcome, 0) + 1

    def as_dict(self) -> dict:
        return {**asdict(self), "text": self.text()}

    def text(self) -> str:
        lines = [f"===== Ledgerlink: {self.flow} =====", f"run: {self.run_id}",
                 "what: usage in billing -> the period's invoices and adjustments (rated with each contract's tariff)",
                 f"periods: {', '.join(self.periods) or 'none'} | documents: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none")]
        for period, counts in sorted(self.by_period.items()):
            adjusted = any(k.startswith("adjustments") for k in counts)
            lines.append(f"  {period}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                         + (" (usage for invoices already issued: adjusted, never changed)" if adjusted else ""))
        money: dict[tuple[str, str], list[int]] = {}
        for doc in self.documents:
            sums = money.setdefault((doc["kind"], doc["currency"]), [0, 0, 0, 0])
            sums[0] += 1
            sums[1] += doc["net_minor"]
            sums[2] += doc["vat_minor"]
            sums[3] += doc["gross_minor"]
        for (kind, currency), (count, net, vat, gross) in sorted(money.items()):
            lines.append(f"  {kind}s written: {count} in {currency}: net {_major(net)} VAT {_major(vat)} "
                         f"gross {_major(gross)}")
        if self.issued:
            series: dict[str, list[str]] = {}
            for _, number in self.issued:  # one run per country's series, each in its own order
                series.setdefault(number[:3], []).append(number)
            lines.append(f"issued: {len(self.issued)} document(s): " + "; ".join(
                f"{min(numbers)} .. {max(numbers)} ({len(numbers)})" for _, numbers in sorted(series.items())))
        return "\n".join(lines)


def _major(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def rate_periods(periods: list[str], billing: sa.Engine, summary: RatingSummary,
                 now: datetime | None = None) -> RatingSummary:
    """Rate each period's accounts into their documents (one billing transaction per period)."""
    now = now or datetime.now(timezone.utc)
    for period in periods:
        tariffs = read_tariffs(billing, period)
        prices = negotiated_prices(billing, period)
        usage: dict[str, list] = {}
        for row in period_usage(billing, period):
            usage.setdefault(row.customer_id, []).append(row)
        with billing.begin() as conn:
            ours = {r[0] for r in conn.execute(sa.text(
                f"SELECT DISTINCT customer_id FROM invoices WHERE period_start = :s AND status = :d AND {OURS_SQL}"),
                {"s": period_start(period).isoformat(),
                                                                          "d": DRAFT})}
            for customer_id in sorted(set(usage) | ours):
                _rate_account(conn, customer_id, period, usage.get(customer_id, []), tariffs, prices, summary, now)
        summary.periods.append(period)
    return summary


def _rate_account(conn, customer_id: str, period: str, rows, tariffs, prices, summary: RatingSummary,
                  now: datetime) -> None:
    lines = []
    for row in rows:
        tariff = tariffs[row.tariff_id].negotiated(prices.get((row.contract_id, row.tariff_id)))
        lines += rate_period(row.seconds, tariff, period)
    contract_id = rows[0].contract_id if rows else None
    currency = tariffs[rows[0].tariff_id].currency if rows else None
    documents = period_documents(conn, customer_id, period)
    if contract_id is None:  # no usage left (a correction took it away): only our drafts change
        contract_id, currency = _contract_and_currency(conn, documents)
    issued = [d for d in documents if d.status != DRAFT]
    if not issued:
        invoice_id = invoice_id_for(customer_id, period)
        existing = next((d for d in documents if d.invoice_id == invoice_id), None)
        _write(conn, summary, "invoice", invoice_id=invoice_id, customer_id=customer_id, contract_id=contract_id,
               period=period, currency=currency, lines=lines, existing=existing, now=now)
        return
    # After issue, what changed goes out as documents of their own, never as edits: what adds to the period in an
    # adjustment invoice (UA-), what takes off in a credit note (UC-) returning the issued invoice. Each line keeps
    # the sign of its document (as the ERP's gate and the e-invoice types require: no negative line on an invoice).
    changes = difference(lines, [line for d in issued for line in d.lines])
    returned = next((d.invoice_id for d in issued if d.invoice_id.startswith(INVOICE_PREFIX)), issued[0].invoice_id)
    for credit_note, kind in ((False, "adjustment"), (True, "credit note")):
        # A line that takes off money (or, free, minutes) belongs to the credit note.
        part = [c for c in changes if (c.net_minor < 0 or (c.net_minor == 0 and c.quantity < 0)) == credit_note]
        prefix = CREDIT_NOTE_PREFIX if credit_note else ADJUSTMENT_PREFIX
        earlier = [d for d in documents if d.invoice_id.startswith(prefix)]
        existing = earlier[-1] if earlier and earlier[-1].status == DRAFT else None
        invoice_id = existing.invoice_id if existing else \
            adjustment_id_for(customer_id, period, len(earlier) + 1, credit_note=credit_note)
        _write(conn, summary, kind, invoice_id=invoice_id, customer_id=customer_id, contract_id=contract_id,
               period=period, currency=currency, lines=part, existing=existing, now=now,
               credits_invoice_id=returned if credit_note else None)
    # A draft invoice of ours beside an issued invoice of billing's: its lines moved into the adjustments.
    for draft in documents:
        if draft.invoice_id.startswith(INVOICE_PREFIX) and draft.status == DRAFT:
            write_draft(conn, invoice_id=draft.invoice_id, customer_id=customer_id, contract_id=contract_id,
                        period=period, currency=currency, lines=[], existing=draft, now=now)


def _write(conn, summary: RatingSummary, kind: str, *, invoice_id: str, lines, existing, **document) -> None:
    """Write one draft document (unless there is neither one nor anything to put in it) and count it."""
    if existing is None and not lines:
        return
    outcome = write_draft(conn, invoice_id=invoice_id, lines=lines, existing=existing, **document)
    summary.count(document["period"], f"{kind}s {outcome}")
    if outcome in ("created", "updated"):
        net, vat, gross = totals(lines)
        summary.documents.append({"invoice_id": invoice_id, "kind": kind, "currency": document["currency"],
                                  "net_minor": net, "vat_minor": vat, "gross_minor": gross})


def _contract_and_currency(conn, documents) -> tuple[str, str]:
    ids = [d.invoice_id for d in documents] or [""]
    row = conn.execute(sa.text("SELECT contract_id, currency FROM invoices WHERE invoice_id = :i"), {"i": ids[0]}).first()
    return (row[0], row[1]) if row else ("", "")


def rate_nightly(run_id: str, billing: sa.Engine, ledger: Ledger, now: datetime | None = None) -> RatingSummary:
    """Rate the periods that received files since they were last rated."""
    ledger.hold_lease(RATING_LEASE, run_id)
    ledger.start_run(run_id, NIGHTLY.id)
    files = UsageFiles(ledger.engine, INTAKE_FLOW)
    periods = files.unrated_periods()
    summary = rate_periods(periods, billing, RatingSummary(NIGHTLY.id, run_id), now)
    files.mark_rated(periods)
    return _close(ledger, summary)


def rate_month_end(run_id: str, period: str, billing: sa.Engine, ledger: Ledger,
                   now: datetime | None = None) -> RatingSummary:
    """Rate the closed ``period`` (and whatever else waits for rating), then issue the period's drafts."""
    ledger.hold_lease(RATING_LEASE, run_id)
    ledger.start_run(run_id, MONTH_END.id)
    files = UsageFiles(ledger.engine, INTAKE_FLOW)
    periods = sorted(set(files.unrated_periods()) | {period})
    summary = rate_periods(periods, billing, RatingSummary(MONTH_END.id, run_id), now)
    files.mark_rated(periods)
    summary.issued = issue_drafts(billing, period, now or datetime.now(timezone.utc))
    return _close(ledger, summary)


def _close(ledger: Ledger, summary: RatingSummary) -> RatingSummary:
    ledger.finish_run(summary.run_id, summary.flow, SUCCEEDED, summary.as_dict())
    with ledger.engine.begin() as conn:  # the shared lease goes with the run
        from ledgerlink.ledger import FlowLease

        conn.execute(sa.delete(FlowLease).where(FlowLease.flow == RATING_LEASE, FlowLease.run_id == summary.run_id))
    log.info("\n%s", summary.text())
    return summary


def run_task(run_id: str, *, closing_month_of: datetime | None) -> dict:
    """The rating's Airflow task: nightly (``closing_month_of`` None), or at month-end for the month before the
    one ``closing_month_of`` (the run's logical date: the 1st of the next month) falls in."""
    from ledgerlink import tasks

    if closing_month_of is None:
        summary = rate_nightly(run_id, tasks.billing_engine(), tasks.ledger())
    else:
        period = previous_period(f"{closing_month_of.astimezone(timezone.utc):%Y-%m}")
        summary = rate_month_end(run_id, period, tasks.billing_engine(), tasks.ledger())
    return {"periods": summary.periods, "documents": summary.outcomes, "issued": len(summary.issued)}
