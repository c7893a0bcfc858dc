"""What finance reads: the summary at the end of a load task's log and the XLSX reconciliation workbook."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


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

    def counts_add_up(self) -> bool:
        """Every change found ends as exactly one outcome."""
        return self.changes == (self.created + self.updated + self.deleted + self.already_in_target
                                + self.quarantined + self.rejected)

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "held_back"}
        return json.loads(json.dumps(data, default=str))

    def text(self) -> str:
        lines = [
            f"===== Ledgerlink: {self.flow} =====",
            f"run: {self.run_id}",
            f"what: {self.entity} -> {self.target}",
            f"sent: {self.sent} (created {self.created}, updated {self.updated}) | unchanged: {self.unchanged} | "
            f"deleted: {self.deleted} | quarantined: {self.quarantined} | rejected: {self.rejected}",
            f"changes: {self.changes} = created {self.created} + updated {self.updated} + deleted {self.deleted}"
            f" + already in the target {self.already_in_target} + held back {self.quarantined}"
            f" + refused {self.rejected}" + ("" if self.counts_add_up() else "  (DO NOT ADD UP: some change is unaccounted for)"),
        ]
        if self.message:
            lines.append(f"message: {self.message}")
        if self.acknowledged is not None:
            lines.append(f"acknowledged: {self.acknowledged} (confirmed by the receiver this run) | awaiting "
                         f"acknowledgement: {self.awaiting_acknowledgement or 0} | held back: {self.quarantined}")
        if self.totals:
            lines.append("money sent, per currency and VAT rate:")
            for row in self.totals:
                amounts = "  ".join(f"{k} {v}" for k, v in row.items() if k not in ("currency", "vat_rate"))
                lines.append(f"  {row['currency']} VAT {row['vat_rate']}%: {amounts}")
        lines += self.notes
        if self.reconciliation:
            lines.append("reconciliation: DIFFERENCES")
            lines += [f"  - {d}" for d in self.reconciliation]
        else:
            lines.append(f"reconciliation: OK ({self.reconciliation_detail})")
        if self.gate_report:
            lines.append(f"gate report: {self.gate_report}")
        if self.workbook:
            lines.append(f"workbook: {self.workbook}")
        return "\n".join(lines)


def write_workbook(summary: RunSummary, path: Path, source_totals: list[dict], target_totals: list[dict]) -> Path:
    """Summary sheet, held-back rows with reasons, and totals source vs target (the same figures as the log)."""
    from openpyxl import Workbook  # imported when a report is written, not at DAG parse time

    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Summary")
    sheet.append(["Flow", summary.flow])
    sheet.append(["Run", summary.run_id])
    sheet.append(["Entity", summary.entity])
    sheet.append(["Target", summary.target])
    for label in ("sent", "created", "updated", "unchanged", "deleted", "quarantined", "rejected"):
        sheet.append([label.capitalize(), getattr(summary, label)])
    sheet.append(["Reconciliation", "OK" if not summary.reconciliation else "DIFFERENCES"])
    for difference in summary.reconciliation:
        sheet.append(["", difference])
    sheet.append(["Gate report", summary.gate_report])

    totals = book.create_sheet("Totals")
    totals.append(["Side", "Currency", "VAT rate %", "Net", "VAT", "Gross"])
    for side, rows in (("sent this run", summary.totals), ("source", source_totals), ("target", target_totals)):
        for row in rows:
            # Text keeps the exact Decimal; a float cell would round (openpyxl has no decimal type).
            totals.append([side, row["currency"], row["vat_rate"], str(row.get("net", "")), str(row.get("vat", "")),
                           str(row.get("gross", ""))])

    held = book.create_sheet("Held back")
    held.append(["Key", "Status", "Reasons", "Row"])
    for row in summary.held_back:
        # The ledger keeps a held-back row as JSON text already: encoding it again would escape every quote.
        text = row["row"] if isinstance(row["row"], str) else json.dumps(row["row"], ensure_ascii=False, default=str)
        held.append([row["key"], row["status"], row["reasons"], text])
    book.save(path)
    return path
