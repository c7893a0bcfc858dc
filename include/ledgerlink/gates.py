"""Gates: a Great Expectations suite per entity, run on the exact batch about to be loaded.

Blocking expectations fail the task (``GateFailed``) and nothing is loaded; warning expectations hold
the failing rows back (quarantine, with reasons) and let the rest through. Every run keeps its evidence:
a JSON record and an HTML page in the run's report folder, and a row in the ledger — saved before any
exception is raised.
"""
from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ledgerlink.errors import ConfigurationError, GateFailed
from ledgerlink.taxids import is_canonical_tax_id, is_valid_tax_id

log = logging.getLogger(__name__)
ROW_ID = "_row"
SAMPLE_ROWS = 5
EARLIEST_DATE = "2000-01-01"
# Turkey's KDV 1/10/20 %, Russia's НДС 0/5/7/10/22 % (20 % before 2026).
KNOWN_VAT_RATES = ["0", "1", "5", "7", "10", "20", "22"]


@dataclass(frozen=True)
class Check:
    """One expectation: ``kind`` is the GX expectation class name, ``args`` its arguments."""

    name: str
    kind: str
    args: dict
    blocking: bool


@dataclass(frozen=True)
class Suite:
    entity: str
    key: str
    checks: tuple[Check, ...]
    # Columns computed from the batch before validation, for rules GX has no built-in for (check digits):
    # name -> values, one per row.
    derive: Callable[[pd.DataFrame], dict] | None = None

    @property
    def checked_columns(self) -> list[str]:
        """The columns the checks name, in order: all GX is given of a batch (plus the derived ones)."""
        named = []
        for check in self.checks:
            for argument in ("column", "column_A", "column_B", "column_list"):
                value = check.args.get(argument)
                named += value if isinstance(value, list) else [value] if value else []
        return list(dict.fromkeys(named))


@dataclass
class GateResult:
    passed: pd.DataFrame
    quarantined: list[tuple[str, list[str], dict]]
    failed_warning: list[str]
    report_json: Path
    report_html: Path
    evaluated_rows: int = 0
    failed_blocking: list[str] = field(default_factory=list)


# C0 controls and DEL (NUL, tabs, line breaks, escapes): 1C and the ERP store them as they come, and they break
# files, reports and screens downstream. C1 controls too (U+0080..U+009F): what cp1251/cp1254 text read as
# Latin-1 turns into.
_CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x9f]"
# Fields whose absence a target refuses (NOT NULL in the ERP, required in 1C): a gate failure naming the row.
CUSTOMER_REQUIRED = ("customer_id", "legal_name", "tax_id", "country", "entity_kind", "currency")
CUSTOMER_TEXT = ("legal_name", "tax_id", "kpp", "address", "city", "email")
INVOICE_LINE_REQUIRED = ("invoice_id", "line_no", "quantity", "unit_price_minor", "net_minor", "vat_rate",
                         "vat_minor", "gross_minor", "currency")
INVOICE_LINE_TEXT = ("invoice_id", "tariff_id", "description", "quantity")
# Set by the invoice-line extract: whether the line's invoice exists in billing (a line is read with a left join,
# so an orphan is held back by its key instead of vanishing from an inner join).
INVOICE_FOUND = "invoice_found"
# Set by the extracts when a money or count column held something that is not a whole number (a loosely typed
# source such as SQLite): the offending column names, per row.
NOT_INTEGER = "not_whole_numbers"


def _present(df: pd.DataFrame, column: str) -> np.ndarray:
    """Per row: the value is there (not NULL; for text, not only blanks)."""
    if column not in df:
        return np.zeros(len(df), dtype=bool)
    values = df[column]
    present = values.notna().to_numpy(dtype=bool)
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        present = present & values.astype("string").str.strip().fillna("").ne("").to_numpy(dtype=bool)
    return present


def _printable(df: pd.DataFrame, column: str) -> np.ndarray:
    """Per row: the text holds no control character (a missing value is not this check's business)."""
    if column not in df:
        return np.ones(len(df), dtype=bool)
    found = df[column].astype("string").str.contains(_CONTROL_CHARACTERS, regex=True)
    return ~found.fillna(False).to_numpy(dtype=bool)


def _text(value) -> str | None:
    """A cell as text, or None when missing (pandas' NA has no truth value)."""
    return None if _isna(value) else str(value)


def _common_derived(df: pd.DataFrame, required: tuple[str, ...], text: tuple[str, ...]) -> dict:
    """``<field>_present`` for required fields, ``<field>_printable`` for text fields, and whether every number
    was a whole one."""
    out = {f"{column}_present": _present(df, column) for column in required}
    for column in text:
        out[f"{column}_printable"] = _printable(df, column)
    whole = np.ones(len(df), dtype=bool)
    if NOT_INTEGER in df:
        whole = df[NOT_INTEGER].isna().to_numpy(dtype=bool)
    out["numbers_are_whole"] = whole
    return out


def _common_checks(required: tuple[str, ...], text: tuple[str, ...]) -> tuple[Check, ...]:
    checks = [Check(f"{column} present", "ExpectColumnValuesToBeInSet",
                    {"column": f"{column}_present", "value_set": [True]}, True) for column in required]
    checks.append(Check("amounts and counts are whole numbers (minor units)", "ExpectColumnValuesToBeInSet",
                        {"column": "numbers_are_whole", "value_set": [True]}, True))
    checks += [Check(f"{column} has no control characters", "ExpectColumnValuesToBeInSet",
                     {"column": f"{column}_printable", "value_set": [True]}, False) for column in text]
    return tuple(checks)


def _derive_customer(df: pd.DataFrame) -> dict:
    countries = [_text(c) for c in df["country"]]
    tax_ids = [_text(t) for t in df["tax_id"]]
    out = _common_derived(df, CUSTOMER_REQUIRED, CUSTOMER_TEXT)
    # A missing tax id fails "tax_id present"; this rule judges the ids that are there.
    out["tax_id_check_digits_ok"] = [t is None or is_valid_tax_id(c, t) for c, t in zip(countries, tax_ids)]
    # Stored exactly as the tax office writes it: "6135317476", not " 6135 317476 ". The raw value is refused,
    # never silently compacted: billing (the ERP's relay) is what finance corrects, and 1C would keep the spaces.
    out["tax_id_canonical"] = [t is None or is_canonical_tax_id(t) for t in tax_ids]
    russian_company = (df["country"] == "RU").fillna(False) & (df["entity_kind"] == "company").fillna(False)
    out["kpp_well_formed"] = (~russian_company | df["kpp"].fillna("").str.fullmatch(r"\d{9}").fillna(False)
                              ).to_numpy(dtype=bool)
    return out


def _minor_units(df: pd.DataFrame, column: str) -> np.ndarray:
    """An amount column as int64 (a missing amount as 0: "… present" fails those rows)."""
    values = df[column]
    if values.dtype == np.int64:
        return values.to_numpy()
    return pd.to_numeric(values, errors="coerce").fillna(0).to_numpy(dtype=np.int64)


def _derive_invoice_line(df: pd.DataFrame) -> dict:
    found = df[INVOICE_FOUND].fillna(False).to_numpy(dtype=bool) if INVOICE_FOUND in df else np.ones(len(df), bool)
    out = _common_derived(df, INVOICE_LINE_REQUIRED, INVOICE_LINE_TEXT)
    out["line_id_present"] = _present(df, "line_id")
    # A line whose invoice is gone is held back by "the line's invoice exists" (it has no customer or date to
    # check); a line whose invoice is there but has no customer or date is a blocking failure.
    out["invoice_exists"] = found
    out["customer_id_present"] = _present(df, "customer_id") | ~found
    out["issue_date_present"] = _present(df, "issue_date") | ~found
    net = _minor_units(df, "net_minor")
    # A rate that is not a number fails "VAT rate is a known rate" below, not the whole gate. Each distinct
    # rate is parsed once (a handful per batch; parsing 200,000 strings took a sixth of the gate's own time).
    codes, rates = pd.factorize(df["vat_rate"])
    parsed = pd.to_numeric(pd.Series(rates, dtype=object), errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
    rate = np.where(codes >= 0, parsed[codes] if len(parsed) else -1, -1)
    # Per-line VAT, half-up to the minor unit, in exact integer arithmetic: (net*rate*2 + 100) // 200.
    expected_vat = (net * rate * 2 + 100) // 200
    vat = _minor_units(df, "vat_minor")
    out["vat_matches_rate"] = vat == expected_vat
    # ISO dates compare as text; GX's between does not take strings, so the rule is derived here. A missing date
    # fails "issue_date present" (or the orphan rule), not this one.
    in_period = (df["issue_date"] >= EARLIEST_DATE) & (df["issue_date"] <= _today_plus(31))
    out["issue_date_in_period"] = in_period.fillna(True).to_numpy(dtype=bool)
    out["gross_is_net_plus_vat"] = _minor_units(df, "gross_minor") == net + vat
    return out


def _today_plus(days: int) -> str:
    return date.fromordinal(datetime.now(timezone.utc).date().toordinal() + days).isoformat()


def suite_for(entity: str, max_rows: int | None = None) -> Suite:
    """The expectation suite of an entity. ``max_rows`` bounds the batch size (a runaway extract is blocked)."""
    count = Check("batch size within the expected volume", "ExpectTableRowCountToBeBetween",
                  {"min_value": 0, "max_value": max_rows}, blocking=True)
    if entity == "customer":
        return Suite(entity, "customer_id", derive=_derive_customer, checks=(
            count,
            *_common_checks(CUSTOMER_REQUIRED, CUSTOMER_TEXT),
            # Rows sharing a key are all held back: which one billing meant is for a person to say.
            Check("customer id unique in billing", "ExpectColumnValuesToBeUnique", {"column": "customer_id"}, False),
            Check("tax id check digits valid", "ExpectColumnValuesToBeInSet",
                  {"column": "tax_id_check_digits_ok", "value_set": [True]}, True),
            Check("tax id stored in its canonical form (digits only, no spaces)", "ExpectColumnValuesToBeInSet",
                  {"column": "tax_id_canonical", "value_set": [True]}, True),
            Check("country is TR or RU", "ExpectColumnValuesToBeInSet", {"column": "country", "value_set": ["TR", "RU"]}, True),
            Check("currency is TRY or RUB", "ExpectColumnValuesToBeInSet",
                  {"column": "currency", "value_set": ["TRY", "RUB"]}, True),
            Check("KPP is 9 digits for a Russian company", "ExpectColumnValuesToBeInSet",
                  {"column": "kpp_well_formed", "value_set": [True]}, False),
            Check("address present", "ExpectColumnValuesToNotBeNull", {"column": "address"}, False),
            Check("legal name fits 1C (150 characters)", "ExpectColumnValueLengthsToBeBetween",
                  {"column": "legal_name", "min_value": 1, "max_value": 150}, False),
        ))
    if entity == "invoice_line":
        return Suite(entity, "line_id", derive=_derive_invoice_line, checks=(
            count,
            Check("line id present", "ExpectColumnValuesToBeInSet",
                  {"column": "line_id_present", "value_set": [True]}, True),
            *_common_checks(INVOICE_LINE_REQUIRED, INVOICE_LINE_TEXT),
            Check("customer_id present", "ExpectColumnValuesToBeInSet",
                  {"column": "customer_id_present", "value_set": [True]}, True),
            Check("issue_date present", "ExpectColumnValuesToBeInSet",
                  {"column": "issue_date_present", "value_set": [True]}, True),
            # The extract puts every row of a key billing holds twice into one batch: all of them are held back.
            Check("line id unique in billing", "ExpectColumnValuesToBeUnique", {"column": "line_id"}, False),
            Check("the line's invoice exists in billing", "ExpectColumnValuesToBeInSet",
                  {"column": "invoice_exists", "value_set": [True]}, False),
            Check("net amount not negative", "ExpectColumnValuesToBeBetween", {"column": "net_minor", "min_value": 0}, True),
            Check("VAT matches the line's rate (half-up per line)", "ExpectColumnValuesToBeInSet",
                  {"column": "vat_matches_rate", "value_set": [True]}, True),
            Check("gross = net + VAT", "ExpectColumnValuesToBeInSet",
                  {"column": "gross_is_net_plus_vat", "value_set": [True]}, True),
            Check("currency is TRY or RUB", "ExpectColumnValuesToBeInSet",
                  {"column": "currency", "value_set": ["TRY", "RUB"]}, True),
            Check("VAT rate is a known rate", "ExpectColumnValuesToBeInSet",
                  {"column": "vat_rate", "value_set": KNOWN_VAT_RATES}, True),
            Check("issue date in the period (2000-01-01 to a month ahead)", "ExpectColumnValuesToBeInSet",
                  {"column": "issue_date_in_period", "value_set": [True]}, True),
            Check("description present", "ExpectColumnValueLengthsToBeBetween",
                  {"column": "description", "min_value": 1}, False),
        ))
    raise ConfigurationError(f"no gate suite for entity {entity!r}")


def _gx_context():
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx  # heavy (2-3 s): imported when a gate runs, never at DAG parse time
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every in-memory batch under 1 GB (an md5 over pandas' hash of every cell) for a batch
    # marker nothing here reads: half of the gate's time on a 200,000-line chunk. The staged file the
    # batch came from, named in the run's reports, identifies it. (Module constant: no option reaches it, and
    # it holds for every GX validation in this process, a worker's other DAGs included.)
    pandas_execution_engine.HASH_THRESHOLD = 0

    context = gx.get_context(mode="ephemeral")
    # No "Calculating Metrics" bars: they flood finance's task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return gx, context


def validate(df: pd.DataFrame, suite: Suite) -> dict:
    """Run the suite through a GX ValidationDefinition; returns a plain, JSON-able result."""
    validation = _validation_for(suite)
    # Only the columns the checks read: GX copies and hashes what it is given (a third of a 200,000-line
    # chunk's validation time went to columns no check looks at). A checked column the batch lacks stays
    # missing, and its check fails saying so.
    batch = df[[c for c in suite.checked_columns if c in df.columns]].copy()
    for name, values in (suite.derive(df) if suite.derive else {}).items():
        batch[name] = values
    batch[ROW_ID] = np.arange(len(batch))
    # Counts first (GX's BASIC format: a third cheaper on a 200,000-line chunk); only a batch with a failing
    # check is validated again for the failing rows' ids, which quarantine and the reports name.
    result = validation.run(batch_parameters={"dataframe": batch}, result_format={"result_format": "BASIC"})
    if not result.success:
        result = validation.run(batch_parameters={"dataframe": batch}, result_format={
            "result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID], "partial_unexpected_count": 20})
    return _outcome(result, suite, len(df))


_VALIDATIONS: dict[str, object] = {}


def _validation_for(suite: Suite):
    """The suite's GX ValidationDefinition, built once per process and suite: chunks of one run reuse it."""
    cache_key = repr((suite.entity, suite.checks))
    if cache_key not in _VALIDATIONS:
        _VALIDATIONS[cache_key] = _build_validation(suite)
    return _VALIDATIONS[cache_key]


def _build_validation(suite: Suite):
    gx, context = _gx_context()
    source = context.data_sources.add_pandas(f"{suite.entity}_batch")
    asset = source.add_dataframe_asset(suite.entity)
    definition = asset.add_batch_definition_whole_dataframe("whole batch")
    gx_suite = gx.ExpectationSuite(name=f"{suite.entity}_gate")
    for check in suite.checks:
        expectation_class = getattr(gx.expectations, check.kind)
        gx_suite.add_expectation(expectation_class(**{k: v for k, v in check.args.items() if v is not None},
                                                   meta={"name": check.name, "blocking": check.blocking}))
    gx_suite = context.suites.add(gx_suite)
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.entity}_gate", data=definition, suite=gx_suite))


def _outcome(result, suite: Suite, rows_count: int) -> dict:
    checks = []
    for outcome in result.results:
        meta = outcome.expectation_config.meta or {}
        raw = outcome.result or {}
        rows = sorted({int(i[ROW_ID]) for i in raw.get("unexpected_index_list") or []})
        checks.append({
            "name": meta.get("name"), "blocking": bool(meta.get("blocking")), "success": bool(outcome.success),
            "expectation": outcome.expectation_config.type, "kwargs": _jsonable(outcome.expectation_config.kwargs),
            "unexpected_count": raw.get("unexpected_count"), "observed_value": _jsonable(raw.get("observed_value")),
            "unexpected_rows": rows,
            "exception": (outcome.exception_info or {}).get("exception_message")
            if isinstance(outcome.exception_info, dict) else None,
        })
    return {"entity": suite.entity, "rows": rows_count, "success": bool(result.success), "checks": checks,
            "validated_at": datetime.now(timezone.utc).isoformat()}


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


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
        sample = [_row_dict(df, r) for r in offending[:SAMPLE_ROWS]]
        raise GateFailed(suite.entity, _describe(outcome, blocking=True), sample, str(report_html))

    reasons_by_row: dict[int, list[str]] = {}
    for check in outcome["checks"]:
        if not check["blocking"] and not check["success"]:
            for row in check["unexpected_rows"]:
                reasons_by_row.setdefault(row, []).append(check["name"])
    quarantined = [(str(df.at[row, suite.key]), reasons, _row_dict(df, row)) for row, reasons in sorted(reasons_by_row.items())]
    ledger.quarantine(run_id, flow, suite.entity, quarantined)
    keep = np.ones(len(df), dtype=bool)
    keep[list(reasons_by_row)] = False
    return GateResult(passed=df[keep].reset_index(drop=True), quarantined=quarantined, failed_warning=failed_warning,
                      report_json=report_json, report_html=report_html, evaluated_rows=len(df))


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


def _row_dict(df: pd.DataFrame, row: int) -> dict:
    record = df.iloc[row].to_dict()
    return {k: (None if _isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in record.items()
            if not str(k).startswith("_")}


def _isna(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def render_html(outcome: dict, df: pd.DataFrame, suite: Suite) -> str:
    """A readable validation page: one line per expectation, the first offending rows under each failure."""
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>Gate {html.escape(suite.entity)}</title>",
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        ".fail{background:#fdd}.warn{background:#ffd}.ok{background:#dfd}</style>",
        f"<h1>Gate: {html.escape(suite.entity)}</h1>",
        f"<p>{outcome['rows']} rows validated at {html.escape(outcome['validated_at'])}. "
        f"Result: <b>{'passed' if outcome['success'] else 'failed'}</b></p>",
        "<table><tr><th>check</th><th>kind</th><th>result</th><th>failing rows</th></tr>",
    ]
    for check in outcome["checks"]:
        css = "ok" if check["success"] else ("fail" if check["blocking"] else "warn")
        verdict = "passed" if check["success"] else ("BLOCKS the load" if check["blocking"] else "rows held back")
        parts.append(f"<tr class='{css}'><td>{html.escape(str(check['name']))}</td>"
                     f"<td>{'blocking' if check['blocking'] else 'warning'}</td><td>{verdict}</td>"
                     f"<td>{check['unexpected_count'] if check['unexpected_count'] is not None else ''}</td></tr>")
        if not check["success"] and check["unexpected_rows"]:
            sample = [_row_dict(df, r) for r in check["unexpected_rows"][:SAMPLE_ROWS]]
            parts.append("<tr><td colspan=4><pre>" + html.escape(
                "\n".join(json.dumps(s, ensure_ascii=False, default=str) for s in sample)) + "</pre></td></tr>")
    parts.append("</table>")
    return "\n".join(parts)
