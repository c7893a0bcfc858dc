"""Gates: a Great Expectations suite per entity, run on the exact batch about to be loaded.

Blocking expectations fail the task (``GateFailed``) and nothing is loaded; warning expectations hold
the failing rows back (quarantine, with reasons) and let the rest through. Every run keeps its evidence:
a JSON record and an HTML page in the run's report folder, and a row in the ledger — saved before any
exception is raised.

The modules: ``model`` (checks, suites, results), ``rules`` (what every suite shares), ``suites`` (the
registry, one module per entity), ``gx`` (the Great Expectations adapter), ``report`` (the HTML page) and
``run`` (:func:`run_gate`).

Importing this package is light (no pandas, no GX): the exchange map consults the suite names when the DAGs
are parsed. The names that need pandas are loaded on first use (``_LAZY``); GX only when a gate runs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ledgerlink.gates.model import Check, GateResult, Suite
from ledgerlink.gates.suites import suite_for, suite_names

if TYPE_CHECKING:
    from ledgerlink.gates.gx import ROW_ID, validate
    from ledgerlink.gates.report import render_html
    from ledgerlink.gates.rules import INVOICE_FOUND, INVOICE_IS_CREDIT_NOTE, KNOWN_VAT_RATES, NOT_INTEGER
    from ledgerlink.gates.run import BlockGate, run_gate

# Public name -> the module defining it (each imports pandas).
_LAZY = {
    "run_gate": "ledgerlink.gates.run",
    "BlockGate": "ledgerlink.gates.run",
    "validate": "ledgerlink.gates.gx",
    "ROW_ID": "ledgerlink.gates.gx",
    "render_html": "ledgerlink.gates.report",
    "INVOICE_FOUND": "ledgerlink.gates.rules",
    "INVOICE_IS_CREDIT_NOTE": "ledgerlink.gates.rules",
    "NOT_INTEGER": "ledgerlink.gates.rules",
    "KNOWN_VAT_RATES": "ledgerlink.gates.rules",
}

__all__ = ["Check", "GateResult", "Suite", "suite_for", "suite_names", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
