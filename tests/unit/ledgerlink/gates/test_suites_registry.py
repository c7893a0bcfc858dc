"""The suite registry (ledgerlink.gates.suites): suites chosen by name, the names known without importing
pandas or Great Expectations."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerlink.errors import ConfigurationError
from ledgerlink.gates import suites
from ledgerlink.gates.suites import SUITE_MODULES, suite_for, suite_names

INCLUDE = Path(__file__).resolve().parents[4] / "include"


def test_an_unknown_suite_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(ConfigurationError) as caught:
        suite_for("invoice_lines", max_rows=10)
    message = str(caught.value)
    assert "'invoice_lines'" in message
    assert all(name in message for name in suite_names())


def test_every_registered_name_builds_its_suite():
    assert suite_names() == {"customer", "einvoice", "invoice_line", "onec_invoice", "payment", "usage"}
    for name in suite_names():
        suite = suite_for(name, max_rows=7)
        assert suite.entity == name, "reports and ledger records are named by the suite's entity"
        assert callable(suite.derive)
        names = [check.name for check in suite.checks]
        assert len(names) == len(set(names)), f"{name}: two checks share a name (reasons would be ambiguous)"
        assert suite.checks[0].name == "batch size within the expected volume"
        assert suite.checks[0].args["max_value"] == 7 and suite.checks[0].blocking
        assert suite.key in suite.checked_columns


def test_every_suite_module_is_registered():
    """A suite module left out of the table would never run."""
    modules = {f"{suites.__name__}.{info.name}" for info in pkgutil.iter_modules(suites.__path__)}
    assert modules == set(SUITE_MODULES.values())


def test_the_names_are_known_without_pandas_or_great_expectations():
    """The exchange map checks its gate names when DAGs are parsed: that must stay light. Building a suite
    needs pandas, never GX (imported only when a gate runs)."""
    code = (
        "import sys\n"
        "def heavy():\n"
        "    return sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'numpy', 'great_expectations'))\n"
        "import ledgerlink.gates.suites\n"
        "from ledgerlink.gates import suite_names, Suite, Check, GateResult\n"
        "assert suite_names() == {'customer', 'einvoice', 'invoice_line', 'onec_invoice', 'payment', 'usage'}\n"
        "print(heavy())\n"
        "from ledgerlink.gates import suite_for, run_gate, INVOICE_FOUND\n"
        "suite_for('invoice_line'); suite_for('customer')\n"
        "print('great_expectations' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(INCLUDE)})
    assert result.returncode == 0, result.stderr[-2000:]
    light, gx_imported = result.stdout.strip().splitlines()
    assert light == "[]"
    assert gx_imported == "False"
