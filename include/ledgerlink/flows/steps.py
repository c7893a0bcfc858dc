"""The gate step every flow shares: the staged batch through the flow's suite, the run blocked on a blocking
failure. (A keyed flow then diffs what passed: ``keyed.KeyedFlow.gate``.)
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from ledgerlink import settings
from ledgerlink.errors import GateFailed
from ledgerlink.flows.spec import FlowSpec
from ledgerlink.flows.staging import read_frame, stage_frame
from ledgerlink.flows.state import RunState
from ledgerlink.gates import run_gate, suite_for
from ledgerlink.ledger import BLOCKED, Ledger


@contextlib.contextmanager
def blocked_on_gate_failure(ledger: Ledger, spec: FlowSpec, run_id: str) -> Iterator[None]:
    """Inside it, the run holds the flow's lease; a blocking gate failure ends the run 'blocked' (nothing was
    loaded) and is raised on."""
    ledger.hold_lease(spec.id, run_id)
    try:
        yield
    except GateFailed as e:
        ledger.end_run_early(run_id, spec.id, BLOCKED, str(e))
        raise


def gate_staged(state: RunState, ledger: Ledger, spec: FlowSpec, *, max_rows: int | None = None) -> RunState:
    """Gate every staged part with the flow's suite (the map names it): a blocking failure in any part stops the
    run before anything is loaded; rows held back are quarantined with their reasons. Returns the state with the
    parts that passed (a part is staged again only where rows were held back), the count held back and the
    last gate report. ``max_rows``: the suite's bound on one part."""
    suite = suite_for(spec.gate, max_rows=max_rows)
    ledger.clear_quarantine(state.run_id, spec.id)  # an earlier attempt of this run decided before: decide again
    reports = settings.reports_dir(spec.id, state.run_id)
    gated, quarantined, report = [], 0, ""
    for index, part in enumerate(state.batch):
        result = run_gate(read_frame(part), suite, run_id=state.run_id, flow=spec.id, ledger=ledger,
                          report_dir=reports if len(state.batch) == 1 else reports / f"part_{index:04d}")
        quarantined += len(result.quarantined)
        report = str(result.report_html)
        gated.append(stage_frame(spec.id, state.run_id, f"gated_{index:04d}", result.passed)
                     if result.quarantined else part)
    return dataclasses.replace(state, batch=gated, quarantined=quarantined, gate_report=report)
