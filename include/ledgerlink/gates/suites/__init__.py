"""The gate suites by name: one module per entity in this package, each building its suite with
``suite(max_rows)``.

Consulting the names is light (no pandas, no Great Expectations): the exchange map checks its ``gate:`` names
against :func:`suite_names` when the DAGs are parsed. Only :func:`suite_for` imports a suite's module.
"""
from __future__ import annotations

import importlib

from ledgerlink.errors import ConfigurationError
from ledgerlink.gates.model import Suite

# A new suite: a module here with ``suite(max_rows) -> Suite``, and its name in this table.
SUITE_MODULES = {
    "customer": "ledgerlink.gates.suites.customer",
    "einvoice": "ledgerlink.gates.suites.einvoice",
    "invoice_line": "ledgerlink.gates.suites.invoice_line",
    "onec_invoice": "ledgerlink.gates.suites.onec_invoice",
    "payment": "ledgerlink.gates.suites.payment",
    "usage": "ledgerlink.gates.suites.usage",
}


def suite_names() -> set[str]:
    """The names a flow may choose its gate by."""
    return set(SUITE_MODULES)


def suite_for(name: str, max_rows: int | None = None) -> Suite:
    """The suite called ``name``. ``max_rows`` bounds the batch size (a runaway extract is blocked)."""
    if name not in SUITE_MODULES:
        raise ConfigurationError(f"no gate suite called {name!r}; the suites are: {', '.join(sorted(SUITE_MODULES))}")
    return importlib.import_module(SUITE_MODULES[name]).suite(max_rows)
