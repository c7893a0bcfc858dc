"""The gate's HTML page: one line per expectation, the first offending rows under each failure."""
from __future__ import annotations

import html
import json

import pandas as pd

from ledgerlink.gates.model import Suite
from ledgerlink.gates.rules import is_missing

# Offending rows shown under a failed check, and in the message of a blocked load.
SAMPLE_ROWS = 5


def row_dict(df: pd.DataFrame, row: int) -> dict:
    """A batch row as the reports show it: plain Python values, None for missing, no internal ``_`` columns."""
    record = df.iloc[row].to_dict()
    return {k: (None if is_missing(v) else (v.item() if hasattr(v, "item") else v)) for k, v in record.items()
            if not str(k).startswith("_")}


def verdict(outcome: dict) -> str:
    """The gate's result in words: a blocking failure fails it (nothing loaded); a warning only holds its rows
    back while the rest loads, so the gate passed ("passed with 2 rows held back")."""
    checks = outcome["checks"]
    if any(c["blocking"] and not c["success"] for c in checks):
        return "failed: the load is blocked, nothing was loaded"
    held = {r for c in checks if not c["blocking"] and not c["success"] for r in c.get("unexpected_rows") or ()}
    if held:
        return f"passed with {len(held)} row{'s' if len(held) != 1 else ''} held back"
    return "passed"


def render_html(outcome: dict, df: pd.DataFrame | None, suite: Suite) -> str:
    """A readable validation page: one line per expectation, the first offending rows under each failure."""
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>Gate {html.escape(suite.entity)}</title>",
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        ".fail{background:#fdd}.warn{background:#ffd}.ok{background:#dfd}</style>",
        f"<h1>Gate: {html.escape(suite.entity)}</h1>",
        f"<p>{outcome['rows']} rows validated at {html.escape(outcome['validated_at'])}. "
        f"Result: <b>{html.escape(verdict(outcome))}</b></p>",
        "<table><tr><th>check</th><th>kind</th><th>result</th><th>failing rows</th></tr>",
    ]
    for check in outcome["checks"]:
        css = "ok" if check["success"] else ("fail" if check["blocking"] else "warn")
        result = "passed" if check["success"] else ("BLOCKS the load" if check["blocking"] else "rows held back")
        parts.append(f"<tr class='{css}'><td>{html.escape(str(check['name']))}</td>"
                     f"<td>{'blocking' if check['blocking'] else 'warning'}</td><td>{result}</td>"
                     f"<td>{check['unexpected_count'] if check['unexpected_count'] is not None else ''}</td></tr>")
        if not check["success"] and (check.get("sample") or check["unexpected_rows"]):
            # a gate over blocks keeps each failure's first rows as it goes (``sample``): the block is gone
            sample = check.get("sample") or [row_dict(df, r) for r in check["unexpected_rows"][:SAMPLE_ROWS]]
            parts.append("<tr><td colspan=4><pre>" + html.escape(
                "\n".join(json.dumps(s, ensure_ascii=False, default=str) for s in sample)) + "</pre></td></tr>")
    parts.append("</table>")
    return "\n".join(parts)
