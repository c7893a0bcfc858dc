"""Closing a run, the same for every flow: the workbook, the run's status and summary in the ledger, the summary
in the task log, and the error that fails the task when the target does not agree or refused records."""
from __future__ import annotations

import logging

from ledgerlink import settings
from ledgerlink.errors import ReconciliationError, TerminalError
from ledgerlink.ledger import FAILED, SUCCEEDED, Ledger
from ledgerlink.report import RunSummary, write_workbook

log = logging.getLogger(__name__)


def held_back_rows(quarantined: list[dict], rejected: list[dict] = ()) -> list[dict]:
    """The summary's held-back rows: those the gate quarantined, then those the target refused."""
    return ([{"key": q["source_key"], "status": "quarantined", "reasons": q["reasons"], "row": q["row"]}
             for q in quarantined]
            + [{"key": i["source_key"], "status": "rejected", "reasons": i["last_error"], "row": ""}
               for i in rejected])


def close_run(ledger: Ledger, summary: RunSummary, *, rejected: list[dict] = (),
              source_totals: list[dict] = (), target_totals: list[dict] = ()) -> RunSummary:
    """Write the run's workbook, record the run succeeded (or failed: a difference or a refused record) with its
    summary, log the summary, and raise :class:`ReconciliationError` on a difference, then
    :class:`TerminalError` on a refusal. ``rejected``: the run's items the target refused."""
    workbook = settings.reports_dir(summary.flow, summary.run_id) / "reconciliation.xlsx"
    summary.workbook = str(write_workbook(summary, workbook, list(source_totals), list(target_totals)))
    clean = not summary.reconciliation and not rejected
    ledger.finish_run(summary.run_id, summary.flow, SUCCEEDED if clean else FAILED, summary.as_dict())
    log.info("\n%s", summary.text())
    if summary.reconciliation:
        raise ReconciliationError(summary.flow, summary.reconciliation)
    if rejected:
        raise TerminalError(f"{summary.target} refused {len(rejected)} {summary.entity} record(s); see the "
                            f"workbook {summary.workbook}: "
                            + "; ".join(f"{i['source_key']}: {i['last_error']}" for i in rejected[:5]))
    return summary
