"""The Great Expectations adapter: a suite becomes a GX ValidationDefinition (built once per process), a batch
is validated through it, and the result comes back as a plain, JSON-able outcome.

GX itself is imported when a gate first runs, never at import (2-3 s; DAG files are parsed without it).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from ledgerlink.gates.model import Suite

# Each batch row's position, added for validation: GX names failing rows by it.
ROW_ID = "_row"


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
    validation = validation_for(suite)
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
