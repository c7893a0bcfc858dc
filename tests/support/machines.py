"""What the stateful load-path tests share: replaying an interval, redelivering an old batch, and a final
clean run that must settle everything.

A machine names its flow module (``flow``), sets ``self.ledger``, keeps its staged batches in
``self.old_metas``, and defines ``settle`` (a rule: stage, load, reconcile), ``load(meta)`` and
``check_settled``.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from ledgerlink.errors import RunSuperseded


class RedeliveryMachine(RuleBasedStateMachine):
    flow = None  # the flow module under test

    @initialize()
    def first_load(self):
        self.settle()

    @rule()
    def replay_interval(self):
        """Someone resets the watermark: the same interval is read again."""
        with self.ledger.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM watermarks WHERE flow = :f"), {"f": self.flow.FLOW})
        self.settle()

    @rule(back=st.integers(1, 3))
    def redeliver_old_batch(self, back):
        """An old staged batch is loaded again (a duplicate delivery): the latest run's is harmless; an older
        one, after a later run started, is refused, having changed nothing."""
        if len(self.old_metas) >= back:
            meta = self.old_metas[-back]
            if back == 1:
                self.load(meta)
            else:
                with pytest.raises(RunSuperseded):
                    self.load(meta)
            self.end_run(meta.run_id)

    def end_run(self, run_id: str) -> None:
        """What the rest of an interrupted or redelivered DAG run does in the end (its last task, or Airflow's
        failure callback): the run is closed and the flow's lease released for the next run."""
        self.ledger.end_run_early(run_id, self.flow.FLOW, "failed", "interrupted in a test")


def settling_test_case(machine: type[RedeliveryMachine], max_examples: int):
    """The machine as a test case whose every example ends with ``check_settled`` after its steps."""

    class Settling(machine):
        def teardown(self):
            try:
                self.check_settled()
            finally:
                super().teardown()

    Settling.__name__ = Settling.__qualname__ = f"Settling{machine.__name__}"
    Settling.TestCase.settings = settings(
        max_examples=max_examples, stateful_step_count=6, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    return Settling.TestCase
