"""Team rules over the DagBag: every DAG imports, is documented, owned, tagged, retried, and matches the map."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
HEAVY_MODULES = ("pandas", "great_expectations", "sqlalchemy", "requests", "openpyxl", "pyarrow", "paramiko")
# The one exception, and why: a file intake waits with the SFTP provider's deferrable sensor, whose module imports
# its hook and so paramiko (about 0.25 s a parse); the sensor is what keeps a waiting run off a worker slot.
ALLOWED_AT_PARSE = {"bridge_usage_to_billing": ("paramiko",)}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports(dagbag):
    assert dagbag.import_errors == {}
    assert {p.stem for p in DAGS.glob("*.py")} == set(dagbag.dag_ids), "one DAG per file, named after it"


def test_every_dag_is_owned_tagged_retried_and_documented(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        for task in dag.tasks:
            assert task.owner == "ledgerlink", (dag_id, task.task_id)
            assert task.retries >= 1, (dag_id, task.task_id)
            assert task.retry_exponential_backoff, (dag_id, task.task_id)


def test_dags_match_the_exchange_map(dagbag):
    from ledgerlink.exchange_map import default_map

    live = {flow.id: flow for flow in default_map().flows() if flow.status == "live"}
    assert set(live) <= set(dagbag.dag_ids)
    # Any other DAG serves a live flow (the e-invoices' status polling and daily summary): its tags name it.
    for dag_id in set(dagbag.dag_ids) - set(live):
        assert any(flow_id in dagbag.dags[dag_id].tags for flow_id in live), dag_id
    for dag_id, dag in dagbag.dags.items():
        if dag_id not in live:
            continue
        assert dag.schedule == live[dag_id].schedule, dag_id
        assert live[dag_id].entity in dag.tags


def test_no_dag_maps_a_task_per_row(dagbag):
    for dag in dagbag.dags.values():
        assert len(dag.tasks) <= 10
        assert not any(type(t).__name__ == "MappedOperator" for t in dag.tasks)


def test_parsing_a_dag_does_no_heavy_imports_and_no_io():
    """Importing the DAG files must not pull in data libraries or touch connections (parse-time rule).

    Run in a fresh interpreter with no connections defined: any connection lookup or I/O at parse time
    would fail, and any heavy import would show in sys.modules.
    """
    code = (
        "import sys, importlib.util, pathlib\n"
        "import airflow.sdk\n"
        "airflow.sdk.Asset(name='baseline', uri='baseline://x/y')  # what Airflow itself loads for an Asset\n"
        "heavy = []\n"
        # the files allowed a heavy import last, so that they cannot hide another file's
        f"for path in sorted(pathlib.Path({str(DAGS)!r}).glob('*.py'), key=lambda p: (p.stem in {set(ALLOWED_AT_PARSE)!r}, p.name)):\n"
        "    before = set(sys.modules)\n"
        "    spec = importlib.util.spec_from_file_location(path.stem, path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"    allowed = {ALLOWED_AT_PARSE!r}.get(path.stem, ())\n"
        f"    heavy += [m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY_MODULES!r}\n"
        "              and m.split('.')[0] not in allowed]\n"
        "print(sorted(heavy))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "include"), "HOME": "/nonexistent",
           "AIRFLOW_HOME": "/nonexistent-airflow-home"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_dag_ends_with_the_summary_and_has_names_timeouts_and_a_failure_mail(dagbag):
    """The summary runs after every other task, even a failed one; people see names, not ids; nothing hangs."""
    for dag_id, dag in dagbag.dags.items():
        summary = dag.get_task("summary")
        assert summary.trigger_rule == "all_done", dag_id
        assert dag.leaves == [summary] or [t.task_id for t in dag.leaves] == ["summary"], dag_id
        assert dag.dag_display_name != dag_id or dag_id.startswith("billing_einvoices_"), dag_id
        assert dag.dagrun_timeout is not None, dag_id
        for task in dag.tasks:
            assert task.execution_timeout is not None, (dag_id, task.task_id)
        callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
        assert any(getattr(c, "__qualname__", "").startswith("notify_failure") for c in callbacks), dag_id


def test_exchange_dags_take_trigger_params(dagbag):
    for dag_id in ("billing_customers_to_onec", "billing_invoice_lines_to_erp", "billing_einvoices"):
        params = dagbag.dags[dag_id].params
        assert {"customer", "from_date", "to_date", "dry_run"} <= set(params), dag_id
        assert params["dry_run"] is False
