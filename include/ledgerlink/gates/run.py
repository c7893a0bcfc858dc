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


ROW_COUNT_KIND = "ExpectTableRowCountToBeBetween"


class BlockGate:
    """A gate over one batch that arrives in blocks (a file larger than memory should hold at once): each block is
    validated through the suite's GX validation as it comes (GX's cost is its vectorised checks per block, its
    memory one block's), rows held back are quarantined as they are found, and the batch's evidence (one JSON
    record, one HTML page, one ledger row) is written once, when it ends or blocks.

    A blocking failure raises :class:`GateFailed` at the block it is found in: the caller loads blocks inside one
    transaction, so nothing of the batch is loaded. What no single block can show is checked on the whole: the
    batch's row count against the suite's volume check (counted here), and whatever the caller finds across
    blocks (a key twice in the batch, say), which it reports through :meth:`fail` under the check's name.
    Row numbers in the evidence are positions in the whole batch."""

    def __init__(self, suite: Suite, *, run_id: str, flow: str, report_dir: Path, ledger):
        self.suite, self.run_id, self.flow, self.report_dir, self.ledger = suite, run_id, flow, report_dir, ledger
        self.volume = next((c for c in suite.checks if c.kind == ROW_COUNT_KIND), None)
        self.block_suite = Suite(suite.entity, suite.key, tuple(c for c in suite.checks if c.kind != ROW_COUNT_KIND),
                                 suite.derive)
        self.rows = 0
        self.held_back = 0
        self.checks: dict[str, dict] = {}
        self.validated_at = ""

    def check(self, df: pd.DataFrame) -> np.ndarray:
        """Validate one block; quarantine its warned rows; return which rows pass (raises on a blocking failure,
        the evidence saved first)."""
        df = df.reset_index(drop=True)
        outcome = validate(df, self.block_suite)
        self.validated_at = outcome["validated_at"]
        for check in outcome["checks"]:
            self._merge(check, df)
        self.rows += len(df)
        if self.volume is not None and self.volume.args.get("max_value") is not None \
                and self.rows > self.volume.args["max_value"]:
            self._volume_outcome()
        if any(c["blocking"] and not c["success"] for c in self.checks.values()):
            self._block()
        reasons_by_row: dict[int, list[str]] = {}
        for check in outcome["checks"]:
            if not check["blocking"] and not check["success"]:
                for row in check["unexpected_rows"]:
                    reasons_by_row.setdefault(row, []).append(check["name"])
        keep = np.ones(len(df), dtype=bool)
        if reasons_by_row:
            self.ledger.quarantine(self.run_id, self.flow, self.suite.entity, [
                (str(df.at[row, self.suite.key]), reasons, row_dict(df, row))
                for row, reasons in sorted(reasons_by_row.items())])
            keep[list(reasons_by_row)] = False
            self.held_back += len(reasons_by_row)
        return keep

    def fail(self, check_name: str, rows: list[int], sample: list[dict], detail: str = "") -> None:
        """A blocking failure the caller found across blocks (``rows``: positions in the batch, ``sample``: the
        first of them as the reports show rows): the evidence is saved and :class:`GateFailed` raised."""
        check = self.checks.get(check_name)
        if check is None:
            check = self.checks[check_name] = {
                "name": check_name, "blocking": True, "success": True, "expectation": "checked across blocks",
                "kwargs": {}, "unexpected_count": 0, "observed_value": None, "unexpected_rows": [], "sample": [],
                "exception": None}
        check.update(success=False, unexpected_count=max(len(rows), 1), unexpected_rows=sorted(rows)[:20],
                     sample=sample[:SAMPLE_ROWS], observed_value=detail or check["observed_value"])
        self._block()

    def finish(self) -> GateResult:
        """The batch passed: its evidence saved; ``passed`` is empty (the caller loaded the blocks)."""
        self._volume_outcome()
        report_json, report_html = self._evidence(success=True)
        return GateResult(passed=pd.DataFrame(), quarantined=[], failed_warning=self._failed(blocking=False),
                          report_json=report_json, report_html=report_html, evaluated_rows=self.rows,
                          held_back=self.held_back)

    # ---------------------------------------------------------------------------------------------------------
    def _merge(self, check: dict, df: pd.DataFrame) -> None:
        merged = self.checks.get(check["name"])
        offset = self.rows
        rows = [offset + r for r in check["unexpected_rows"]]
        sample = [row_dict(df, r) for r in check["unexpected_rows"][:SAMPLE_ROWS]]
        if merged is None:
            self.checks[check["name"]] = {**check, "unexpected_rows": rows[:20], "sample": sample}
            return
        merged["success"] = merged["success"] and check["success"]
        if check["unexpected_count"] is not None:
            merged["unexpected_count"] = (merged["unexpected_count"] or 0) + check["unexpected_count"]
        merged["unexpected_rows"] = (merged["unexpected_rows"] + rows)[:20]
        merged["sample"] = (merged["sample"] + sample)[:SAMPLE_ROWS]
        merged["observed_value"] = check["observed_value"]
        merged["exception"] = merged["exception"] or check["exception"]

    def _volume_outcome(self) -> None:
        if self.volume is None:
            return
        low, high = self.volume.args.get("min_value"), self.volume.args.get("max_value")
        success = (low is None or self.rows >= low) and (high is None or self.rows <= high)
        self.checks[self.volume.name] = {
            "name": self.volume.name, "blocking": self.volume.blocking, "success": success,
            "expectation": "expect_table_row_count_to_be_between (counted across blocks)",
            "kwargs": {k: v for k, v in self.volume.args.items() if v is not None}, "unexpected_count": None,
            "observed_value": self.rows, "unexpected_rows": [], "sample": [], "exception": None}

    def _failed(self, blocking: bool) -> list[str]:
        return [c["name"] for c in self.checks.values() if c["blocking"] == blocking and not c["success"]]

    def _outcome(self, success: bool) -> dict:
        return {"entity": self.suite.entity, "rows": self.rows, "success": success,
                "checks": list(self.checks.values()), "validated_at": self.validated_at}

    def _evidence(self, success: bool) -> tuple[Path, Path]:
        outcome = self._outcome(success)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        report_json = self.report_dir / f"gate_{self.suite.entity}.json"
        report_html = self.report_dir / f"gate_{self.suite.entity}.html"
        report_json.write_text(json.dumps(outcome, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        report_html.write_text(render_html(outcome, None, self.suite), encoding="utf-8")
        self.ledger.record_validation(self.run_id, self.flow, self.suite.entity, success=success, rows=self.rows,
                                      failed_blocking=self._failed(blocking=True),
                                      failed_warning=self._failed(blocking=False),
                                      report_html=str(report_html), report_json=str(report_json))
        log.info("Gate %s: %d rows in blocks, %d blocking and %d warning expectation(s) failed; report %s",
                 self.suite.entity, self.rows, len(self._failed(True)), len(self._failed(False)), report_html)
        return report_json, report_html

    def _block(self) -> None:
        _, report_html = self._evidence(success=False)
        sample = [row for c in self.checks.values() if c["blocking"] and not c["success"] for row in c["sample"]]
        raise GateFailed(self.suite.entity, _describe(self._outcome(False), blocking=True), sample[:SAMPLE_ROWS],
                         str(report_html))
