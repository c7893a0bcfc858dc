"""A gate's run on one batch: validate, keep the evidence, hold warned rows back, block on a blocking failure."""
from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from ledgerlink.errors import GateFailed
from ledgerlink.gates.gx import validate
from ledgerlink.gates.model import GateResult, Suite
from ledgerlink.gates.report import SAMPLE_ROWS, render_html, row_dict

# The package's name, as task logs showed it before the gates were split into modules.
log = logging.getLogger("ledgerlink.gates")


def run_gate(df: pd.DataFrame, suite: Suite, *, run_id: str, flow: str, report_dir: Path, ledger) -> GateResult:
    """Validate, keep the evidence, quarantine warning failures, raise on blocking failures."""
    df = df.reset_index(drop=True)
    outcome = validate(df, suite)
    failed_blocking = [c["name"] for c in outcome["checks"] if c["blocking"] and not c["success"]]
    failed_warning = [c["name"] for c in outcome["checks"] if not c["blocking"] and not c["success"]]
    report_dir.mkdir(parents=True, exist_ok=True)
    report_json = report_dir / f"gate_{suite.entity}.json"
    report_html = report_dir / f"gate_{suite.entity}.html"
    report_json.write_text(json.dumps(outcome, ensure_ascii=False, indent=2), encoding="utf-8")
    report_html.write_text(render_html(outcome, df, suite), encoding="utf-8")
    ledger.record_validation(run_id, flow, suite.entity, success=not failed_blocking, rows=len(df),
                             failed_blocking=failed_blocking, failed_warning=failed_warning,
                             report_html=str(report_html), report_json=str(report_json))
    log.info("Gate %s: %d rows, %d blocking and %d warning expectation(s) failed; report %s",
             suite.entity, len(df), len(failed_blocking), len(failed_warning), report_html)
    if failed_blocking:
        offending = sorted({r for c in outcome["checks"] if c["blocking"] and not c["success"] for r in c["unexpected_rows"]})
        sample = [readable_sample(row_dict(df, r), suite.key) for r in offending[:SAMPLE_ROWS]]
        raise GateFailed(suite.entity, _describe(outcome, blocking=True), sample, str(report_html))

    reasons_by_row: dict[int, list[str]] = {}
    for check in outcome["checks"]:
        if not check["blocking"] and not check["success"]:
            for row in check["unexpected_rows"]:
                reasons_by_row.setdefault(row, []).append(check["name"])
    quarantined = [(str(df.at[row, suite.key]), reasons, row_dict(df, row)) for row, reasons in sorted(reasons_by_row.items())]
    ledger.quarantine(run_id, flow, suite.entity, quarantined)
    keep = np.ones(len(df), dtype=bool)
    keep[list(reasons_by_row)] = False
    return GateResult(passed=df[keep].reset_index(drop=True), quarantined=quarantined, failed_warning=failed_warning,
                      report_json=report_json, report_html=report_html, evaluated_rows=len(df))


def readable_sample(row: dict, key: str) -> str:
    """An offending row as a person reads it in the log: its key first, then field = value, money in major units
    (``gross 1,200.00 TRY``, not ``'gross_minor': 120000``)."""
    from ledgerlink.report import money, readable_row

    readable = readable_row(row)
    currency = readable.get("currency") or ""
    fields = []
    for name, value in readable.items():
        if name == key:
            continue
        if isinstance(value, Decimal):
            fields.append(f"{name} {money(value)} {currency}".rstrip())
        else:
            fields.append(f"{name} {value!r}" if isinstance(value, str) else f"{name} {value}")
    return f"{key} {readable.get(key)!r}: " + ", ".join(fields)


def _describe(outcome: dict, blocking: bool) -> list[str]:
    out = []
    for check in outcome["checks"]:
        if check["blocking"] == blocking and not check["success"]:
            detail = f"{check['unexpected_count']} row(s)" if check["unexpected_count"] is not None else \
                f"observed {check['observed_value']}"
            if check.get("exception"):
                detail = f"could not be evaluated: {check['exception']}"
            out.append(f"{check['name']} ({check['expectation']}): {detail}")
    return out
