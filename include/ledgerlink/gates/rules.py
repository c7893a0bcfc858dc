"""Rules every entity's suite shares: required fields, text without control characters, whole numbers, the
batch's volume; and the columns the extracts set for the gates to read."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ledgerlink.gates.model import Check

# Turkey's KDV 1/10/20 %, Russia's НДС 0/5/7/10/22 % (20 % before 2026).
KNOWN_VAT_RATES = ["0", "1", "5", "7", "10", "20", "22"]
# C0 controls and DEL (NUL, tabs, line breaks, escapes): 1C and the ERP store them as they come, and they break
# files, reports and screens downstream. C1 controls too (U+0080..U+009F): what cp1251/cp1254 text read as
# Latin-1 turns into.
# Also the invisible ones that split or hide text the same way: zero-width spaces and joiners, direction marks,
# the Unicode line and paragraph separators, a stray byte-order mark.
_CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x9f" + "\u200b-\u200f\u2028\u2029\ufeff" + "]"
# Set by the invoice-line extract: whether the line's invoice exists in billing (a line is read with a left join,
# so an orphan is held back by its key instead of vanishing from an inner join).
INVOICE_FOUND = "invoice_found"
# Set by an extract that reads credit notes: whether the line's invoice is a credit note (IADE, billing writes its
# amounts negative). Its lines may carry negative amounts; any other line may not.
INVOICE_IS_CREDIT_NOTE = "invoice_is_credit_note"
# Set by the extracts when a money or count column held something that is not a whole number (a loosely typed
# source such as SQLite): the offending column names, per row.
NOT_INTEGER = "not_whole_numbers"


def volume_check(max_rows: int | None) -> Check:
    """A runaway extract is blocked: at most ``max_rows`` rows (no bound when None)."""
    return Check("batch size within the expected volume", "ExpectTableRowCountToBeBetween",
                 {"min_value": 0, "max_value": max_rows}, blocking=True)


def present(df: pd.DataFrame, column: str) -> np.ndarray:
    """Per row: the value is there (not NULL; for text, not only blanks)."""
    if column not in df:
        return np.zeros(len(df), dtype=bool)
    values = df[column]
    found = values.notna().to_numpy(dtype=bool)
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        found = found & values.astype("string").str.strip().fillna("").ne("").to_numpy(dtype=bool)
    return found


def printable(df: pd.DataFrame, column: str) -> np.ndarray:
    """Per row: the text holds no control character (a missing value is not this check's business)."""
    if column not in df:
        return np.ones(len(df), dtype=bool)
    found = df[column].astype("string").str.contains(_CONTROL_CHARACTERS, regex=True)
    return ~found.fillna(False).to_numpy(dtype=bool)


def is_missing(value) -> bool:
    """A cell is NULL/NaN/NA (pandas' NA has no truth value; a list-like cell is not missing)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def text_or_none(value) -> str | None:
    """A cell as text, or None when missing."""
    return None if is_missing(value) else str(value)


def readable_timestamps(df: pd.DataFrame, column: str) -> np.ndarray:
    """Per row: the value is an ISO 8601 timestamp (or missing). Change tracking reads it: a value it cannot
    read must stop the run naming the row, not raise inside the watermark's arithmetic."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column not in df:
        return np.ones(len(df), dtype=bool)
    values = df[column]
    try:  # the usual case, all with an offset: one Arrow cast, no Python per row
        pc.cast(pa.array(values.astype("string"), type=pa.string(), from_pandas=True), pa.timestamp("ns", tz="UTC"))
        return np.ones(len(df), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
        return (parsed.notna() | values.isna()).to_numpy(dtype=bool)


def common_derived(df: pd.DataFrame, required: tuple[str, ...], text: tuple[str, ...]) -> dict:
    """``<field>_present`` for required fields, ``<field>_printable`` for text fields, and whether every number
    was a whole one."""
    out = {f"{column}_present": present(df, column) for column in required}
    for column in text:
        out[f"{column}_printable"] = printable(df, column)
    whole = np.ones(len(df), dtype=bool)
    if NOT_INTEGER in df:
        whole = df[NOT_INTEGER].isna().to_numpy(dtype=bool)
    out["numbers_are_whole"] = whole
    out["updated_at_readable"] = readable_timestamps(df, "updated_at")
    return out


def common_checks(required: tuple[str, ...], text: tuple[str, ...]) -> tuple[Check, ...]:
    """The checks over :func:`common_derived`'s columns: a missing required field or a number that is not whole
    blocks the load; a control character holds the row back."""
    checks = [Check(f"{column} present", "ExpectColumnValuesToBeInSet",
                    {"column": f"{column}_present", "value_set": [True]}, True) for column in required]
    checks.append(Check("amounts and counts are whole numbers (minor units)", "ExpectColumnValuesToBeInSet",
                        {"column": "numbers_are_whole", "value_set": [True]}, True))
    checks.append(Check("updated_at is an ISO 8601 timestamp", "ExpectColumnValuesToBeInSet",
                        {"column": "updated_at_readable", "value_set": [True]}, True))
    checks += [Check(f"{column} has no control characters", "ExpectColumnValuesToBeInSet",
                     {"column": f"{column}_printable", "value_set": [True]}, False) for column in text]
    return tuple(checks)
