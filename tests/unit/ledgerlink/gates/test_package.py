"""The package's public names (ledgerlink.gates): what the flows, the extracts and the bench import."""
from __future__ import annotations

import pytest

import ledgerlink.gates as gates


def test_every_public_name_resolves():
    from ledgerlink.gates import (INVOICE_FOUND, NOT_INTEGER, ROW_ID, Check, GateResult, Suite, run_gate,
                                  suite_for, suite_names, validate)

    assert (INVOICE_FOUND, NOT_INTEGER, ROW_ID) == ("invoice_found", "not_whole_numbers", "_row")
    assert all(callable(f) for f in (run_gate, suite_for, suite_names, validate, Check, GateResult, Suite))
    for name in gates.__all__:
        assert getattr(gates, name) is not None, name
    assert set(gates.__all__) <= set(dir(gates))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        gates.no_such_thing  # noqa: B018
