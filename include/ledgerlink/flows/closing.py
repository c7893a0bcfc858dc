"""Closing a run, the same for every flow: the workbook, the run's status and summary in the ledger, the summary
in the task log, and the error that fails the task when the target does not agree or refused records."""
from __future__ import annotations

import json
import logging

from ledgerlink import settings
from ledgerlink.errors import ReconciliationError, TerminalError
from ledgerlink.ledger import FAILED, SUCCEEDED, SUPERSEDED, Ledger
from ledgerlink.flows.spec import system_name
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
    _, source, target = _spec_facts(summary.flow)
    summary.source = summary.source or system_name(source)
    summary.target_system = summary.target_system or system_name(target)
    clean = not summary.reconciliation and not rejected
    if not clean:
        summary.status = FAILED
    summary.next_steps = summary.next_steps or next_steps(summary, failed=not clean, next_run="")
    workbook = settings.reports_dir(summary.flow, summary.run_id) / "reconciliation.xlsx"
    summary.workbook = str(write_workbook(summary, workbook, list(source_totals), list(target_totals)))
    ledger.finish_run(summary.run_id, summary.flow, SUCCEEDED if clean else FAILED, summary.as_dict())
    log.info("\n%s", summary.text())
    if summary.reconciliation:
        raise ReconciliationError(summary.flow, summary.reconciliation)
    if rejected:
        raise TerminalError(f"{summary.target} refused {len(rejected)} {summary.entity} record(s); see the "
                            f"workbook {summary.workbook}: "
                            + "; ".join(f"{i['source_key']}: {i['last_error']}" for i in rejected[:5]))
    return summary


# The summary that ends every run, good or bad (the DAG's last task, ``ledgerlink.spine``) -------------------------
def _plural(entity: str, count: int) -> str:
    return entity if count == 1 else (entity[:-1] + "ies" if entity.endswith("y") else entity + "s")


def _spec_facts(flow: str) -> tuple[str, str, str]:
    """(entity, source, target) of a flow the exchange map knows; blanks for one it does not."""
    try:
        from ledgerlink.flows.spec import spec_of

        spec = spec_of(flow)
        return spec.entity, spec.source, spec.target
    except Exception:  # noqa: BLE001 - a companion DAG without a map entry: its summary says less, not nothing
        return "", "", ""


def summarise_run(ledger: Ledger, flow: str, run_id: str, *, failed_tasks: list[str] = (),
                  next_run: str = "", dry_run: bool = False) -> RunSummary:
    """The run's summary as the ledger has it, for the DAG's last task: the full summary of a run that closed,
    or, for one that stopped early (blocked, failed, killed), what it sent, what waits and why, what is held
    back, and what happens next. ``failed_tasks``: the Airflow tasks of the run that failed; ``next_run``: when
    the next run starts, as a phrase ("at 03:20 UTC")."""
    from ledgerlink.ledger import BLOCKED

    entity, source, target = _spec_facts(flow)
    run = next((r for r in ledger.runs(flow=flow) if r["run_id"] == run_id), None)
    stored = json.loads(run["summary"]) if run and run.get("summary") else {}
    status = run["status"] if run else ("failed" if failed_tasks else "nothing to do")
    if "sent" in stored and "flow" in stored:
        summary = RunSummary.from_dict(stored)
        summary.status = status
    else:
        summary = RunSummary(flow=flow, run_id=run_id, entity=entity or "record",
                             target=system_name(target) if target else "", status=status,
                             source=system_name(source) if source else "",
                             target_system=system_name(target) if target else "")
        summary.error = _first_lines(stored.get("error", "")) or (
            f"task(s) {', '.join(failed_tasks)} failed" if failed_tasks else "")
        items = ledger.items(flow=flow, run_id=run_id)
        done = [i for i in items if i["status"] == "acknowledged"]
        for item in done:
            outcome = {"create": "created", "update": "updated", "delete": "deleted"}.get(item["operation"])
            if outcome:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
        summary.sent = summary.created + summary.updated
        summary.waiting = [{"key": i["source_key"], "reason": _first_lines(i["last_error"] or "not sent yet", 1)}
                           for i in items if i["status"] in ("planned", "sent")]
        lines = ledger.chunks(flow=flow, run_id=run_id)
        acknowledged_lines = sum(c.get("lines") or 0 for c in lines if c["status"] == "acknowledged"
                                 and c.get("chunk_index", 0) != -1)
        if acknowledged_lines:
            summary.sent += acknowledged_lines
        for chunk in lines:
            if chunk["status"] in ("planned", "sent"):
                summary.waiting.append({"key": f"chunk {chunk.get('chunk_index')} ({chunk.get('lines')} lines)",
                                        "reason": _first_lines(chunk.get("last_error") or "not written yet", 1)})
        if "text" in stored:  # a flow with its own summary (the usage intake and ratings): shown as it wrote it
            summary.error = ""
            summary.reconciliation_detail = ""
            summary.detail = stored["text"]
        if status == BLOCKED:
            summary.waiting = []
    held = ledger.quarantined(flow=flow, run_id=run_id)
    rejected = [i for i in ledger.items(flow=flow, run_id=run_id) if i["status"] == "rejected"
                and i["last_error"] != SUPERSEDED]
    summary.held_back = held_back_rows(held, rejected)
    summary.dry_run = summary.dry_run or dry_run
    summary.next_steps = next_steps(summary, failed=bool(failed_tasks), next_run=next_run)
    return summary


def _first_lines(text: str, limit: int = 10) -> str:
    """An error as the summary shows it: its first lines, not a traceback."""
    lines = [line.rstrip() for line in str(text).splitlines() if line.strip()]
    return "\n".join(lines[:limit]) + ("\n…" if len(lines) > limit else "")


def next_steps(summary: RunSummary, *, failed: bool, next_run: str) -> list[str]:
    """What happens next, in a sentence or two finance can act on."""
    when = next_run or "when the DAG is next triggered"
    target = summary.target_system or summary.target or "the target"
    steps = []
    if summary.dry_run:
        steps.append(f"dry run: nothing was sent and nothing recorded as sent; the next real run ({when}) sends it")
    if summary.status == "blocked":
        steps.append(f"the gate blocked the load: nothing was loaded. Fix the rows it names at the source (its "
                     f"report has them all); the next run ({when}) loads them. Nothing is lost.")
    elif summary.waiting:
        count = len(summary.waiting)
        waiting = f"{count} {_plural(summary.entity, count)} wait"
        lost = f"nothing is lost: each stays planned in the ledger until {target} confirms it"
        if "credentials" in summary.error:
            steps.append(f"{target} refused Ledgerlink's credentials: {waiting}; fix the connection's login and "
                         f"password, then the next run ({when}) sends them; {lost}")
        else:
            steps.append(f"{target} unavailable: {waiting}; Airflow retries with the next run ({when}); {lost}")
    elif failed or summary.status == "failed":
        steps.append(f"the run failed: the next run ({when}) tries again; nothing is lost: what {target} did not "
                     f"confirm is sent again, what it confirmed is not sent twice")
    if summary.reconciliation:
        steps.append(f"the sides differ (above): the master's values are sent again by the next run ({when})")
    if summary.held_back:
        steps.append(f"{len(summary.held_back)} held back: each goes with the first run after it is fixed at "
                     f"the source")
    if not steps:
        steps.append(f"nothing waits; the next run {when}" if next_run else "nothing waits")
    elif next_run and not any(next_run in step for step in steps):
        steps.append(f"the next run {next_run}")
    return steps
