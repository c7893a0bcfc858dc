"""What finance reads: the summary block that ends every run's log, and the XLSX reconciliation workbook.

The summary says, in this order: what was sent; what is held back and why (a line per key, amounts in major
units, capped); the totals on both sides with the difference (also on a quiet night); amounts that changed, old
→ new; and what happens next. The same block ends a good run, a blocked one and a failed one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

log = logging.getLogger(__name__)

SHOWN = 10  # lines per list in the log (held back, changed amounts, waiting); the rest as "… and N more"
AMOUNT_COLUMNS = ("net", "vat", "gross")
MONEY_FORMAT = "#,##0.00"
# A spreadsheet's number is a double: 15 significant digits survive the trip (openpyxl writes "%.16g"). Amounts up
# to 9,999,999,999,999.99 are numbers; a larger one is written as its exact text rather than rounded.
SPREADSHEET_DIGITS = 15


def money(amount) -> str:
    """An exact amount as finance writes it: thousands separated, every digit kept (``1,234.50``)."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except InvalidOperation:
        return str(amount)
    return format(value, ",f")


def minor_to_major(minor, currency: str | None) -> Decimal | None:
    """Integer minor units (kuruş, kopecks) to an exact major amount; None when there is no amount."""
    from ledgerlink.reconcile import to_major  # light: pandas and SQLAlchemy are there already in any task

    if minor is None or minor == "":
        return None
    try:
        return to_major(int(minor), currency or "")
    except (TypeError, ValueError):
        return None


def readable_row(row) -> dict:
    """A held-back row as people read it: JSON text decoded, internal columns dropped, every ``*_minor`` money
    column as its exact major amount under the name without the suffix (``gross_minor`` 120000 → ``gross``
    1200.00)."""
    if isinstance(row, str):
        try:
            row = json.loads(row) if row else {}
        except ValueError:
            return {"row": row}
    if not isinstance(row, dict):
        return {}
    out = {}
    for name, value in row.items():
        if str(name).startswith("_"):
            continue
        if str(name).endswith("_minor"):
            major = minor_to_major(value, row.get("currency"))
            out[str(name).removesuffix("_minor")] = major if major is not None else value
        else:
            out[str(name)] = value
    return out


def _label(row: dict) -> str:
    """A person's name for a record beside its key: a customer's or legal name, else its invoice."""
    for name in ("legal_name", "name", "customer_name"):
        if row.get(name):
            return str(row[name])
    return f"invoice {row['invoice_id']}" if row.get("invoice_id") else ""


def _difference(a: Decimal | None, b: Decimal | None) -> Decimal:
    """a - b, a missing side as zero at the other side's scale (0.00 - 0.00 is 0.00, not 0)."""
    zero = (a if a is not None else b) * 0 if (a is not None or b is not None) else Decimal(0)
    return (a if a is not None else zero) - (b if b is not None else zero)


def _more(count: int) -> list[str]:
    return [f"  … and {count} more"] if count > 0 else []


@dataclass
class RunSummary:
    flow: str
    run_id: str
    entity: str
    target: str
    sent: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    rejected: int = 0
    changes: int = 0  # found this run: new, changed, deleted and held-back records
    already_in_target: int = 0  # changes the target held already (not from a lost answer of ours)
    totals: list[dict] = field(default_factory=list)  # sent amounts per currency and VAT rate
    reconciliation: list[str] = field(default_factory=list)  # differences; empty means agreed
    reconciliation_detail: str = ""
    gate_report: str = ""
    workbook: str = ""
    held_back: list[dict] = field(default_factory=list)  # quarantined and rejected rows with reasons
    # A message delivery (many records in one numbered message, confirmed later by number): what the message
    # was, how many records the receiver has confirmed this run, and how many still wait for its answer.
    message: str = ""
    acknowledged: int | None = None
    awaiting_acknowledgement: int | None = None
    notes: list[str] = field(default_factory=list)  # a flow's own lines for finance (decisions, money received)
    status: str = "succeeded"  # succeeded, failed, blocked; "dry run" when nothing was meant to be sent
    source: str = ""  # the source system as finance names it ("billing")
    target_system: str = ""  # the target system ("1C", "ERP")
    source_count: int | None = None  # records (lines) each side holds, held-back ones left out
    target_count: int | None = None
    source_totals: list[dict] = field(default_factory=list)  # per currency and VAT rate, both sides
    target_totals: list[dict] = field(default_factory=list)
    changed_amounts: list[dict] = field(default_factory=list)  # {key, field, currency, old, new}
    waiting: list[dict] = field(default_factory=list)  # {key, reason}: planned, not delivered
    error: str = ""  # why the run stopped, when it did
    next_steps: list[str] = field(default_factory=list)
    dry_run: bool = False
    detail: str = ""  # a flow's own summary text (the usage intake and ratings), shown as it wrote it

    def counts_add_up(self) -> bool:
        """Every change found ends as exactly one outcome."""
        return self.changes == (self.created + self.updated + self.deleted + self.already_in_target
                                + self.quarantined + self.rejected)

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "held_back"}
        return json.loads(json.dumps(data, default=str))

    @classmethod
    def from_dict(cls, data: dict) -> RunSummary:
        """A summary as the ledger keeps it (``as_dict``); unknown keys (an older or newer version) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # the text -----------------------------------------------------------------------------------------------
    def text(self) -> str:
        source, target = self.source or "source", self.target_system or "target"
        lines = [
            f"===== Ledgerlink: {self.flow} =====",
            f"run: {self.run_id} | {self.status.upper()}" + (" (dry run: nothing was sent)" if self.dry_run else ""),
            f"what: {self.entity}" + (f" from {self.source}" if self.source else "") + f" -> {self.target}",
        ]
        if self.detail:
            lines += [line for line in self.detail.splitlines()[3:]]  # its own header repeats ours
        if self.error:
            first, *rest = self.error.splitlines()
            lines.append(f"why it stopped: {first}")
            lines += [f"  {line.strip()}" for line in rest]
        would = "would send" if self.dry_run else "sent"
        if not self.detail:  # a flow with its own summary text counts in its own terms
            lines.append(
                f"{would}: {self.sent} (created {self.created}, updated {self.updated}) | unchanged: {self.unchanged} | "
                f"deleted: {self.deleted} | held back: {self.quarantined} | refused: {self.rejected}"
                + (f" | waiting: {len(self.waiting)}" if self.waiting else ""))
        if not self.error and not self.detail:
            lines.append(
                f"changes: {self.changes} = created {self.created} + updated {self.updated} + deleted {self.deleted}"
                f" + already in the target {self.already_in_target} + held back {self.quarantined}"
                f" + refused {self.rejected}"
                + ("" if self.counts_add_up() else "  (DO NOT ADD UP: some change is unaccounted for)"))
        if self.message:
            lines.append(f"message: {self.message}")
        if self.acknowledged is not None:
            lines.append(f"acknowledged: {self.acknowledged} (confirmed by the receiver this run) | awaiting "
                         f"acknowledgement: {self.awaiting_acknowledgement or 0} | held back: {self.quarantined}")
        if self.totals:
            lines.append(f"money {would}, per currency and VAT rate:")
            for row in self.totals:
                amounts = "  ".join(f"{k} {money(row[k])}" for k in AMOUNT_COLUMNS if k in row)
                lines.append(f"  {row['currency']} VAT {row['vat_rate']}%: {amounts}")
        lines += self.notes
        lines += self._changed_lines()
        lines += self._held_back_lines()
        lines += self._waiting_lines()
        lines += self._totals_lines(source, target)
        if self.reconciliation:
            lines.append("reconciliation: DIFFERENCES")
            lines += [f"  - {d}" for d in self.reconciliation]
        elif self.reconciliation_detail.startswith("not compared"):
            lines.append(f"reconciliation: {self.reconciliation_detail}")
        elif self.reconciliation_detail:
            lines.append(f"reconciliation: OK ({self.reconciliation_detail})")
        if self.next_steps:
            lines.append("next: " + self.next_steps[0])
            lines += [f"      {step}" for step in self.next_steps[1:]]
        if self.gate_report:
            lines.append(f"gate report: {self.gate_report}")
        if self.workbook:
            lines.append(f"workbook: {self.workbook}")
        return "\n".join(lines)

    def _changed_lines(self) -> list[str]:
        if not self.changed_amounts:
            return []
        lines = [f"amounts changed ({len(self.changed_amounts)}):"]
        for change in self.changed_amounts[:SHOWN]:
            currency = f"{change['currency']} " if change.get("currency") else ""
            lines.append(f"  {change['key']} {change['field']}: {currency}{money(change['old'])} → "
                         f"{money(change['new'])}")
        return lines + _more(len(self.changed_amounts) - SHOWN)

    def _held_back_lines(self) -> list[str]:
        if not self.held_back:
            return []
        lines = [f"held back ({len(self.held_back)}):"]
        for held in self.held_back[:SHOWN]:
            row = readable_row(held.get("row"))
            label = held.get("label") or _label(row)
            amounts = ", ".join(f"{k} {money(row[k])}" for k in AMOUNT_COLUMNS if isinstance(row.get(k), Decimal))
            amounts = f" ({row.get('currency', '')} {amounts})" if amounts else ""
            status = "refused" if held.get("status") == "rejected" else "held back"
            lines.append(f"  {held['key']}" + (f" {label}" if label and label != held["key"] else "")
                         + f"{amounts}: {status}: {held.get('reasons') or 'no reason recorded'}")
        return lines + _more(len(self.held_back) - SHOWN)

    def _waiting_lines(self) -> list[str]:
        if not self.waiting:
            return []
        lines = [f"waiting to be delivered ({len(self.waiting)}):"]
        lines += [f"  {w['key']}: {w.get('reason') or 'not sent yet'}" for w in self.waiting[:SHOWN]]
        return lines + _more(len(self.waiting) - SHOWN)

    def _totals_lines(self, source: str, target: str) -> list[str]:
        """Both sides and the difference, as a small table: the figures themselves, on a quiet night too."""
        rows: list[tuple[str, str, str, str]] = []
        if self.source_count is not None or self.target_count is not None:
            difference = (self.source_count - self.target_count
                          if self.source_count is not None and self.target_count is not None else "")
            rows.append((f"{self.entity} records", str(self.source_count if self.source_count is not None else "-"),
                         str(self.target_count if self.target_count is not None else "-"), str(difference)))
        by_group: dict[tuple[str, str], list[dict | None]] = {}
        for side, group_rows in ((0, self.source_totals), (1, self.target_totals)):
            for row in group_rows:
                by_group.setdefault((str(row["currency"]), str(row["vat_rate"])), [None, None])[side] = row
        for (currency, rate), (left, right) in sorted(by_group.items()):
            for column in AMOUNT_COLUMNS:
                a = Decimal(str(left[column])) if left and column in left else None
                b = Decimal(str(right[column])) if right and column in right else None
                if a is None and b is None:
                    continue
                rows.append((f"{currency} VAT {rate}% {column}", money(a) if a is not None else "-",
                             money(b) if b is not None else "-", money(_difference(a, b))))
        if not rows:
            return []
        header = ("totals", source, target, "difference")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

        def fmt(r, indent="  "):
            return indent + r[0].ljust(widths[0] + 2 - len(indent)) + "  " + "  ".join(
                r[i].rjust(widths[i]) for i in (1, 2, 3))
        return [fmt(header, indent="")] + [fmt(r) for r in rows]


# the workbook ----------------------------------------------------------------------------------------------------
def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None


class _Sheet:
    """A write-only sheet with a bold frozen header, an auto-filter and set widths; money as numbers with
    ``#,##0.00`` written from Decimal (exact up to ``SPREADSHEET_DIGITS`` significant digits, text beyond)."""

    def __init__(self, book, title: str, header: list[str], widths: list[int], money_columns: set[int] = frozenset()):
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        self.book, self.header, self.money_columns = book, header, set(money_columns)
        self.sheet = book.create_sheet(title)
        for index, width in enumerate(widths, start=1):
            self.sheet.column_dimensions[get_column_letter(index)].width = width
        self.sheet.freeze_panes = "A2"
        self.rows = 0
        self._bold = Font(bold=True)
        self.sheet.append([self._cell(name, bold=True) for name in header])

    def _cell(self, value, *, bold: bool = False, money_format: bool = False):
        from openpyxl.cell import WriteOnlyCell

        cell = WriteOnlyCell(self.sheet, value=value)
        if bold:
            cell.font = self._bold
        if money_format:
            cell.number_format = MONEY_FORMAT
        return cell

    def append(self, values: list) -> None:
        out = []
        for index, value in enumerate(values):
            if index in self.money_columns:
                amount = _decimal(value)
                if amount is not None and len(amount.as_tuple().digits) > SPREADSHEET_DIGITS:
                    out.append(str(amount))  # beyond what a spreadsheet's number holds: the exact text instead
                else:
                    out.append(self._cell(amount, money_format=True) if amount is not None else _plain(value))
            else:
                out.append(_plain(value))
        self.sheet.append(out)
        self.rows += 1

    def close(self) -> None:
        from openpyxl.utils import get_column_letter

        self.sheet.auto_filter.ref = f"A1:{get_column_letter(len(self.header))}{self.rows + 1}"


def sheet_for(book, title: str, header: list[str], widths: list[int], money_columns: set[int] = frozenset()) -> _Sheet:
    """A streamed sheet with Ledgerlink's workbook conventions, for other workbooks (the daily e-invoice summary).
    Call ``close()`` when its rows are written."""
    _write_decimals_exactly()
    return _Sheet(book, title, header, widths, money_columns)


def write_workbook(summary: RunSummary, path: Path, source_totals: list[dict] = (),
                   target_totals: list[dict] = ()) -> Path:
    """The run's workbook: a summary sheet (with when it was written), the reconciliation with source, target
    and difference side by side, what was sent, and the held-back rows as readable columns in major units.

    Streamed (openpyxl's write-only mode): memory stays flat however many rows. A sheet only exists when it has
    something to say (a flow without money has no money totals: its reconciliation sheet compares counts)."""
    from openpyxl import Workbook  # imported when a report is written, not at DAG parse time

    _write_decimals_exactly()
    source_totals = list(source_totals) or list(summary.source_totals)
    target_totals = list(target_totals) or list(summary.target_totals)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook(write_only=True)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")

    facts = _Sheet(book, "Summary", ["What", "Value"], [26, 90])
    for label, value in [("Flow", summary.flow), ("Run", summary.run_id), ("Status", summary.status),
                         ("Entity", summary.entity), ("Source", summary.source), ("Target", summary.target),
                         ("Generated at (UTC)", generated)]:
        facts.append([label, value])
    for label in ("sent", "created", "updated", "unchanged", "deleted", "quarantined", "rejected"):
        facts.append([label.capitalize(), getattr(summary, label)])
    facts.append(["Reconciliation", "OK" if not summary.reconciliation else "DIFFERENCES"])
    for difference in summary.reconciliation:
        facts.append(["", difference])
    for step in summary.next_steps:
        facts.append(["Next", step])
    facts.append(["Gate report", summary.gate_report])
    facts.close()

    source, target = summary.source or "source", summary.target_system or "target"
    if source_totals or target_totals or summary.source_count is not None:
        reconciliation = _Sheet(
            book, "Reconciliation", ["Currency", "VAT rate %", "Amount", source, target, "Difference"],
            [10, 11, 14, 20, 20, 16], money_columns={3, 4, 5})
        if summary.source_count is not None or summary.target_count is not None:
            a, b = summary.source_count, summary.target_count
            reconciliation.sheet.append(["", "", f"{summary.entity} records", a, b,
                                         a - b if a is not None and b is not None else None])
            reconciliation.rows += 1
        groups: dict[tuple[str, str], list[dict | None]] = {}
        for side, rows in ((0, source_totals), (1, target_totals)):
            for row in rows:
                groups.setdefault((str(row["currency"]), str(row["vat_rate"])), [None, None])[side] = row
        for (currency, rate), (left, right) in sorted(groups.items()):
            for column in AMOUNT_COLUMNS:
                a = _decimal(left.get(column)) if left else None
                b = _decimal(right.get(column)) if right else None
                if a is None and b is None:
                    continue
                reconciliation.append([currency, rate, column, a, b, _difference(a, b)])
        reconciliation.close()

    if summary.totals:
        sent = _Sheet(book, "Sent", ["Currency", "VAT rate %", "Net", "VAT", "Gross"], [10, 11, 18, 18, 18],
                      money_columns={2, 3, 4})
        for row in summary.totals:
            sent.append([row["currency"], row["vat_rate"], row.get("net"), row.get("vat"), row.get("gross")])
        sent.close()

    readable = [(held, readable_row(held.get("row"))) for held in summary.held_back]
    columns: list[str] = []
    for _, row in readable:
        columns += [c for c in row if c not in columns]
    money_names = {c for c in columns if c in AMOUNT_COLUMNS or any(isinstance(r.get(c), Decimal) for _, r in readable)}
    held = _Sheet(book, "Held back", ["Key", "Status", "Reasons", *columns],
                  [18, 12, 50, *[14 if c in money_names else min(40, max(12, len(c) + 2)) for c in columns]],
                  money_columns={3 + i for i, c in enumerate(columns) if c in money_names})
    for entry, row in readable:
        held.append([_plain(entry["key"]), entry["status"], _plain(entry["reasons"]),
                     *[_plain(row.get(c)) for c in columns]])
    held.close()
    book.save(path)
    return path


def _write_decimals_exactly() -> None:
    """openpyxl writes every number as ``"%.16g" % value``: a Decimal goes through a float and 8745.81 lands in
    the file as 8745.809999999999. Its cell writer is given a formatter that writes a Decimal's own digits
    (every other value as before), so the file holds exactly the amount the ledger summed. Checked against
    openpyxl 3.1.5's ``cell._writer`` (tests/unit/ledgerlink/test_report_workbook.py reads the XML back)."""
    from openpyxl.cell import _writer

    original = _writer.safe_string
    if getattr(original, "keeps_decimals", False):
        return

    def safe_string(value):
        if isinstance(value, Decimal) and value.is_finite():
            return format(value, "f")
        return original(value)

    safe_string.keeps_decimals = True
    _writer.safe_string = safe_string


def _plain(value):
    """A value a cell can hold: lists and dicts as JSON text; a control character (often why the row was held
    back, and refused by the XLSX format) shown as its escape, ``\\x00``."""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, str):
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        return ILLEGAL_CHARACTERS_RE.sub(lambda found: f"\\x{ord(found.group()):02x}", value)
    return value
