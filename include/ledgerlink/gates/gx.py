"""The Great Expectations adapter: a suite becomes a GX ValidationDefinition (built once per process), a batch
is validated through it, and the result comes back as a plain, JSON-able outcome.

GX itself is imported when a gate first runs, never at import (2-3 s; DAG files are parsed without it).
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from ledgerlink.gates.model import Check, Suite

# Each batch row's position, added for validation: GX names failing rows by it.
ROW_ID = "_row"


def _gx_context():
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx  # heavy (2-3 s): imported when a gate runs, never at DAG parse time
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # That module sets its own logger to INFO when imported, past the package's level: "Created temporary
    # directory ... for ephemeral docs site" twice in every gate's log. Finance's logs keep GX at WARNING.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

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
    validation = validation_for(suite)
    # Only the columns the checks read: GX copies and hashes what it is given (a third of a 200,000-line
    # chunk's validation time went to columns no check looks at). A checked column the batch lacks stays
    # missing, and its check fails saying so.
    batch = df[[c for c in suite.checked_columns if c in df.columns]].copy()
    for name, values in (suite.derive(df) if suite.derive else {}).items():
        batch[name] = values
    batch[ROW_ID] = np.arange(len(batch))
    # Screening first: the per-row rules derived as booleans are checked as two columns (every blocking one
    # holds; every warning one holds) instead of one expectation each, in GX's BASIC format (counts only). A
    # batch that passes is done: each rule's own result follows from its family's. Only a batch with a failing
    # check is validated again, rule by rule, for the failing rows' ids, which quarantine and the reports name.
    # (On a 200,000-line chunk each expectation costs GX about 9 ms; the invoice-line suite has 16 such rules.)
    screening, families = screening_for(suite)
    for family, members in families.items():
        batch[family] = np.logical_and.reduce([batch[m.args["column"]].to_numpy(dtype=bool) for m in members])
    result = screening.run(batch_parameters={"dataframe": batch}, result_format={"result_format": "BASIC"})
    if result.success:
        return _screened_outcome(result, suite, families, len(df))
    result = validation.run(batch_parameters={"dataframe": batch}, result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID], "partial_unexpected_count": 20})
    return _outcome(result, suite, len(df))


def _is_derived_rule(check, suite: Suite) -> bool:
    """A check that a derived boolean column is True on every row (what the families gather)."""
    return (check.kind == "ExpectColumnValuesToBeInSet" and check.args.get("value_set") == [True]
            and suite.derive is not None)


_SCREENINGS: dict[str, tuple[object, dict]] = {}


def screening_for(suite: Suite):
    """The suite's screening validation (its derived rules folded into one column per blocking kind, the other
    checks as they are) and the families: family column -> its member checks."""
    cache_key = repr((suite.entity, suite.checks))
    if cache_key not in _SCREENINGS:
        families: dict[str, list] = {}
        checks = []
        for check in suite.checks:
            if _is_derived_rule(check, suite):
                family = f"_all_{'blocking' if check.blocking else 'warning'}_rules_hold"
                if family not in families:
                    checks.append(Check(family, check.kind, {"column": family, "value_set": [True]}, check.blocking))
                families.setdefault(family, []).append(check)
            else:
                checks.append(check)
        screening = Suite(entity=f"{suite.entity}_screening", key=suite.key, checks=tuple(checks), derive=suite.derive)
        _SCREENINGS[cache_key] = (_build_validation(screening), families)
    return _SCREENINGS[cache_key]


def _screened_outcome(result, suite: Suite, families: dict, rows_count: int) -> dict:
    """The suite's outcome from a screening that passed: each check as GX reported it, and each derived rule as
    its family did (every row holds it)."""
    reported = {c["name"]: c for c in _outcome(result, suite, rows_count)["checks"]}
    members = {check.name for checks in families.values() for check in checks}
    checks = []
    for check in suite.checks:
        if check.name in members:
            checks.append({"name": check.name, "blocking": check.blocking, "success": True,
                           "expectation": _snake(check.kind), "kwargs": _jsonable(check.args),
                           "unexpected_count": 0, "observed_value": None, "unexpected_rows": [], "exception": None})
        else:
            checks.append(reported[check.name])
    return {"entity": suite.entity, "rows": rows_count, "success": True, "checks": checks,
            "validated_at": datetime.now(timezone.utc).isoformat()}


def _snake(kind: str) -> str:
    """GX's expectation type as it reports it: ExpectColumnValuesToBeInSet -> expect_column_values_to_be_in_set."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


_VALIDATIONS: dict[str, object] = {}


def validation_for(suite: Suite):
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
