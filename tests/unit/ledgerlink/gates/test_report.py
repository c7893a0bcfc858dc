"""The gate's HTML page (ledgerlink.gates.report)."""
from __future__ import annotations

import json

import pandas as pd

from ledgerlink.gates import suite_for
from ledgerlink.gates.report import render_html, row_dict


def _check(name, blocking, success, rows=()):
    return {"name": name, "blocking": blocking, "success": success, "expectation": "expect_column_values_to_be_in_set",
            "kwargs": {}, "unexpected_count": 0 if success else len(rows), "observed_value": None,
            "unexpected_rows": list(rows), "exception": None}


def test_a_failed_warning_shows_its_rows_held_back():
    df = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "legal_name": ["Acme <b>Ltd</b>", "Beta", "Gamma"],
                       "address": ["Street 1", None, "Street 3"], "_row": [0, 1, 2]})
    outcome = {"entity": "customer", "rows": 3, "success": True, "validated_at": "2026-11-20T10:00:00+00:00",
               "checks": [_check("country is TR or RU", True, True),
                          _check("address present", False, False, rows=[1]),
                          _check("legal_name has no control characters", False, False, rows=[0])]}
    page = render_html(outcome, df, suite_for("customer"))

    assert "<title>Gate customer</title>" in page
    assert "3 rows validated at 2026-11-20T10:00:00+00:00. Result: <b>passed with 2 rows held back</b>" in page, \
        "a warning held rows back and the load went ahead: the gate passed, not failed"
    assert "<tr class='ok'><td>country is TR or RU</td><td>blocking</td><td>passed</td><td>0</td></tr>" in page
    assert "<tr class='warn'><td>address present</td><td>warning</td><td>rows held back</td><td>1</td></tr>" in page
    assert "BLOCKS the load" not in page
    held = json.dumps({"customer_id": "C2", "legal_name": "Beta", "address": None}, ensure_ascii=False)
    assert f"<tr><td colspan=4><pre>{held.replace(chr(34), '&quot;')}</pre></td></tr>" in page, \
        "the held-back row is shown, missing as null, without the internal _row column"
    assert "Acme &lt;b&gt;Ltd&lt;/b&gt;" in page and "<b>Ltd</b>" not in page, "row values are escaped"


def test_a_row_is_shown_as_plain_values():
    df = pd.DataFrame({"net_minor": pd.array([100, None], dtype="Int64"), "vat_rate": ["20", None], "_hash": [1, 2]})
    assert row_dict(df, 0) == {"net_minor": 100, "vat_rate": "20"}
    assert row_dict(df, 1) == {"net_minor": None, "vat_rate": None}
    assert type(row_dict(df, 0)["net_minor"]) is int


def test_the_result_line_says_failed_only_when_a_blocking_check_failed():
    from ledgerlink.gates.report import verdict

    warned = {"success": False, "checks": [_check("address present", False, False, rows=[4])]}
    assert verdict(warned) == "passed with 1 row held back", "GX's success is False here; the gate still passed"
    blocked = {"success": False, "checks": [_check("tax id valid", True, False, rows=[1]),
                                            _check("address present", False, False, rows=[4])]}
    assert verdict(blocked).startswith("failed")
    assert verdict({"success": True, "checks": [_check("tax id valid", True, True)]}) == "passed"
