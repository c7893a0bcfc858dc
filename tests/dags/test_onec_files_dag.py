"""The month-end file exchange's DAG: on the 1st for the month before, catching missed months up in order, one run
at a time; three tasks; its documentation says who is master of what."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "billing_invoices_to_onec_files.py"


def test_the_dag_runs_monthly_with_catch_up_one_run_at_a_time():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAG_FILE)).dags["billing_invoices_to_onec_files"]
    assert (dag.catchup, dag.max_active_runs) == (True, 1)
    assert dag.schedule == "0 3 1 * *"
    assert [t.task_id for t in dag.topological_sort()] == ["send_message", "await_acknowledgement",
                                                            "reconcile_and_report", "summary"]
    assert "master" in dag.doc_md and "ReceivedNo" in dag.doc_md


def test_each_run_closes_the_month_before_its_logical_date():
    from ledgerlink.flows.invoices_to_onec_files import closing_period

    assert closing_period(datetime(2026, 12, 1, 3, tzinfo=timezone.utc)) == "2026-11"
    assert closing_period(datetime(2026, 1, 1, 3, tzinfo=timezone.utc)) == "2025-12"
    assert closing_period(datetime(2026, 12, 2, 9, 50, tzinfo=timezone.utc)) == "2026-11"  # `airflow dags test` now
