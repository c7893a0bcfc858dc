"""The usage (CDR) gate, run on each file before any of it is loaded.

Blocking (the file loads nothing): required fields missing, a call id twice in the file, a negative duration or
participant count. Held back with the file, line and field named (the rest of the file loads): a call for an
account billing does not know in the call's period, a call that started outside the file's billing period, a call
id billing already holds from another file.

The intake sets the columns the held-back rules read (``account_known``, ``taken_before``); ``period`` and
``file_period`` come from reading the file.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ledgerlink.gates.model import Check, Suite
from ledgerlink.gates.rules import common_checks, common_derived, volume_check

USAGE_REQUIRED = ("call_id", "customer_ref", "started_at", "duration_seconds", "participants")
USAGE_TEXT = ("call_id", "bridge_id", "customer_ref", "dial_in_number")
# Set by the intake from billing: the caller has a contract plan in the call's period; billing holds the call id
# from another file already.
ACCOUNT_KNOWN, TAKEN_BEFORE = "account_known", "taken_before"


def _flag(df: pd.DataFrame, column: str, default: bool) -> np.ndarray:
    if column not in df:
        return np.full(len(df), default, dtype=bool)
    return df[column].astype("boolean").fillna(default).to_numpy(dtype=bool)


def _not_negative(df: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce")
    return (values >= 0).astype("boolean").fillna(True).to_numpy(dtype=bool)  # missing: "... present" fails it


def derive(df: pd.DataFrame) -> dict:
    out = common_derived(df, USAGE_REQUIRED, USAGE_TEXT)
    out["duration_not_negative"] = _not_negative(df, "duration_seconds")
    out["participants_not_negative"] = _not_negative(df, "participants")
    out["account_known_in_period"] = _flag(df, ACCOUNT_KNOWN, False) | ~out["customer_ref_present"]
    in_period = df["period"].astype("string") == df["file_period"].astype("string")
    out["started_in_file_period"] = in_period.fillna(True).to_numpy(dtype=bool)
    out["not_taken_before"] = ~_flag(df, TAKEN_BEFORE, False)
    return out


def suite(max_rows: int | None) -> Suite:
    return Suite("usage", "call_id", derive=derive, checks=(
        volume_check(max_rows),
        *common_checks(USAGE_REQUIRED, USAGE_TEXT),
        Check("call_id unique within the file", "ExpectColumnValuesToBeUnique", {"column": "call_id"}, True),
        Check("duration_seconds not negative", "ExpectColumnValuesToBeInSet",
              {"column": "duration_not_negative", "value_set": [True]}, True),
        Check("participants not negative", "ExpectColumnValuesToBeInSet",
              {"column": "participants_not_negative", "value_set": [True]}, True),
        Check("customer_ref: an account with a contract plan in billing for the call's period",
              "ExpectColumnValuesToBeInSet", {"column": "account_known_in_period", "value_set": [True]}, False),
        Check("started_at: inside the billing period the file's name gives", "ExpectColumnValuesToBeInSet",
              {"column": "started_in_file_period", "value_set": [True]}, False),
        Check("call_id: not taken before from another file", "ExpectColumnValuesToBeInSet",
              {"column": "not_taken_before", "value_set": [True]}, False),
    ))
