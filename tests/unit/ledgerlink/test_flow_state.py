"""The run's state between tasks: typed, through XCom as plain JSON, and readable from before it was typed."""
from __future__ import annotations

import json

import pytest

from ledgerlink.flows.state import Outcomes, RunState


def test_the_state_crosses_xcom_unchanged():
    state = RunState(run_id="r", read=3, new=2, batch=["/x/a.arrow"], deletions="/x/d.json",
                     outcomes=Outcomes(created=2), sent_totals=[{"currency": "TRY", "net": "1.10"}])
    assert RunState.from_xcom(json.loads(json.dumps(state.to_xcom()))) == state
    assert state.changes == 2


def test_a_field_this_version_does_not_know_is_refused_not_dropped():
    with pytest.raises(ValueError, match="surprise"):
        RunState.from_xcom({"run_id": "r", "surprise": 1})


def test_a_dict_from_before_the_typed_state_is_read():
    old = {"run_id": "r", "read": 5, "new": 5, "changed": 0, "unchanged": 0, "deleted": 0, "parts": ["/a", "/b"],
           "headers": "/h", "deletions": "/d", "watermark_read": None, "initial": True, "source_keys": 5,
           "quarantined": 0, "gate_report": "", "created": 5, "updated": 0, "rejected": 0, "sent_totals": []}
    state = RunState.from_xcom(old)
    assert (state.batch, state.headers, state.outcomes.created) == (["/a", "/b"], ["/h"], 5)
