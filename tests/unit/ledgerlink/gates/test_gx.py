"""The Great Expectations adapter (ledgerlink.gates.gx): what GX is given of a batch, and what it is spared."""
from __future__ import annotations


def test_gx_sees_only_the_checked_columns_and_a_missing_one_fails_its_check():
    """GX is handed the columns the checks name (and the derived ones), nothing else: a column of values GX
    could not hash does not disturb it. A checked column the batch lacks is not silently skipped."""
    import pandas as pd

    from ledgerlink.gates import suite_for, validate

    suite = suite_for("invoice_line")
    assert {"line_id", "net_sign_fits_invoice_type", "currency", "vat_rate", "description_present", "invoice_id_present"} <= set(suite.checked_columns)
    assert "tariff_id" not in suite.checked_columns
    batch = pd.DataFrame({
        "line_id": ["L1", "L2"], "invoice_id": ["I1", "I1"], "line_no": [1, 2], "customer_id": ["C1", "C1"],
        "issue_date": ["2026-11-01", "2026-11-01"], "tariff_id": ["T1", "T1"], "description": ["a", "b"],
        "quantity": ["1", "2"], "unit_price_minor": [100, 100], "net_minor": [100, 200], "vat_rate": ["20", "20"],
        "vat_minor": [20, 40], "gross_minor": [120, 240], "currency": ["TRY", "TRY"],
        "_extra": [{"not": "hashable"}, {"by": "pandas"}]})
    assert validate(batch, suite)["success"] is True

    outcome = validate(batch.drop(columns=["currency"]), suite)
    currency = next(c for c in outcome["checks"] if c["name"] == "currency is TRY or RUB")
    assert outcome["success"] is False and currency["success"] is False


def test_gx_does_not_fingerprint_the_batch():
    """GX's md5 of every cell (a batch marker nothing reads) was half the gate's time; it is switched off.
    Fails if a GX upgrade moves the switch and the fingerprint comes back."""
    import pandas as pd

    from ledgerlink.gates import suite_for
    from ledgerlink.gates.gx import validation_for

    suite = suite_for("invoice_line")
    batch = pd.DataFrame({"line_id": ["L1"], "invoice_id": ["I1"], "net_minor": [100], "vat_rate": ["20"],
                          "vat_minor": [20], "gross_minor": [120], "currency": ["TRY"], "issue_date": ["2026-11-01"],
                          "description": ["a"]})
    result = validation_for(suite).run(batch_parameters={"dataframe": batch})
    markers = result.meta["batch_markers"]
    assert "ge_load_time" in markers  # the markers are where GX puts the fingerprint
    assert "pandas_data_fingerprint" not in markers


def _lines(n: int = 6):
    import pandas as pd

    return pd.DataFrame({
        "line_id": [f"L{i}" for i in range(n)], "invoice_id": ["I1"] * n, "line_no": list(range(1, n + 1)),
        "customer_id": ["C1"] * n, "issue_date": ["2026-11-01"] * n, "tariff_id": ["T1"] * n,
        "description": ["a"] * n, "quantity": ["1"] * n, "unit_price_minor": [100] * n, "net_minor": [100] * n,
        "vat_rate": ["20"] * n, "vat_minor": [20] * n, "gross_minor": [120] * n, "currency": ["TRY"] * n})


def test_a_screened_batch_reports_every_check_as_the_full_suite_would():
    """A batch that passes the screening (derived rules folded into one column per kind) gets the same outcome,
    check by check, as the full suite run rule by rule."""
    from ledgerlink.gates import gx, suite_for

    suite, batch = suite_for("invoice_line"), _lines()
    screened = gx.validate(batch, suite)
    derived = batch[[c for c in suite.checked_columns if c in batch.columns]].copy()
    for name, values in suite.derive(batch).items():
        derived[name] = values
    derived[gx.ROW_ID] = range(len(derived))
    full = gx._outcome(gx.validation_for(suite).run(batch_parameters={"dataframe": derived},
                                                    result_format={"result_format": "BASIC"}), suite, len(batch))
    strip = lambda c: {k: c[k] for k in ("name", "blocking", "success", "expectation", "unexpected_count")}  # noqa: E731
    assert [strip(c) for c in screened["checks"]] == [strip(c) for c in full["checks"]]
    assert screened["success"] is full["success"] is True


def test_one_failing_rule_in_a_family_is_reported_by_its_own_name():
    from ledgerlink.gates import gx, suite_for

    batch = _lines()
    batch.loc[2, "description"] = "bell\x07"
    outcome = gx.validate(batch, suite_for("invoice_line"))
    failed = [(c["name"], c["unexpected_rows"]) for c in outcome["checks"] if not c["success"]]
    assert failed == [("description has no control characters", [2])]
