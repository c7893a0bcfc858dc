"""The ledger finds its Airflow connection ``ledgerlink_ledger`` wherever Airflow keeps it, and writes there.

Each case runs the ledger and the ``ledgerlink`` CLI in a fresh interpreter with its own AIRFLOW_HOME (Airflow
reads its configuration and builds its secrets backends once per process), and then reads the database the
connection names. A connection defined nowhere falls back to SQLite in LEDGERLINK_HOME; a source that fails
raises instead of falling back. The same lookup inside a task: tests/e2e/test_ledger_connection.py.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PLAN_ONE_ITEM = """
from ledgerlink.ledger import Ledger, PlannedChange
Ledger.migrated().plan("probe-run", "probe_flow", "probe", "thing", [PlannedChange("K-1", None, "h", "create")])
"""


def airflow_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEDGERLINK"))}
    env.update({"PYTHONPATH": str(REPO / "include"), "AIRFLOW_HOME": str(tmp_path / "airflow"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "LEDGERLINK_HOME": str(tmp_path / "home")}, **extra)
    return env


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def planned_keys_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [key for (key,) in db.execute("SELECT source_key FROM items ORDER BY source_key")]


def check_the_ledger_lives_in(env: dict[str, str], ledger_file: Path, tmp_path: Path) -> str:
    """Plan an item through ``Ledger()``, read it back through the CLI, find it in ``ledger_file``."""
    written = run(env, "-c", PLAN_ONE_ITEM)
    cli = run(env, "-m", "ledgerlink", "planned", "--json")
    assert [item["source_key"] for item in json.loads(cli.stdout)] == ["K-1"]
    assert planned_keys_in(ledger_file) == ["K-1"], "the ledger writes to the connection's database"
    assert not (tmp_path / "home" / "ledger.db").exists(), "no SQLite ledger of its own in LEDGERLINK_HOME"
    return written.stdout + written.stderr


@pytest.fixture(scope="module")
def metadata_db(tmp_path_factory) -> Path:
    """A migrated SQLite metadata database, as `airflow db migrate` makes it (about 3 s, once per module)."""
    base = tmp_path_factory.mktemp("metadata")
    run(airflow_env(base), "-m", "airflow", "db", "migrate")
    return base / "airflow"


def with_metadata_db(tmp_path: Path, metadata_db: Path, **extra: str) -> dict[str, str]:
    copy = tmp_path / "airflow"
    copy.mkdir()
    (copy / "airflow.db").write_bytes((metadata_db / "airflow.db").read_bytes())
    return airflow_env(tmp_path, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{copy / 'airflow.db'}", **extra)


def test_a_connection_in_the_environment(tmp_path):
    ledger_file = tmp_path / "via-env.db"
    env = airflow_env(tmp_path, AIRFLOW_CONN_LEDGERLINK_LEDGER=f"sqlite:///{ledger_file}")
    check_the_ledger_lives_in(env, ledger_file, tmp_path)


def test_a_connection_in_the_metadata_database(tmp_path, metadata_db):
    """What the UI's Admin → Connections writes: a row in the metadata database."""
    ledger_file = tmp_path / "via-metastore.db"
    env = with_metadata_db(tmp_path, metadata_db)
    # --conn-type sqlite would be stored as "generic" (Airflow knows the type only from the SQLite provider)
    run(env, "-m", "airflow", "connections", "add", "ledgerlink_ledger", "--conn-uri", f"sqlite:///{ledger_file}")
    log = check_the_ledger_lives_in(env, ledger_file, tmp_path)
    assert "Airflow connection 'ledgerlink_ledger'" in log, "the INFO line says which ledger is used"


def test_a_connection_in_a_secrets_backend(tmp_path):
    ledger_file = tmp_path / "via-secrets.db"
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"ledgerlink_ledger": {"conn_type": "sqlite", "host": str(ledger_file)}}))
    env = airflow_env(tmp_path, AIRFLOW__SECRETS__BACKEND="airflow.secrets.local_filesystem.LocalFilesystemBackend",
                      AIRFLOW__SECRETS__BACKEND_KWARGS=json.dumps({"connections_file_path": str(connections)}))
    check_the_ledger_lives_in(env, ledger_file, tmp_path)


def test_a_connection_defined_nowhere_means_sqlite_in_ledgerlink_home(tmp_path, metadata_db):
    env = with_metadata_db(tmp_path, metadata_db)
    written = run(env, "-c", PLAN_ONE_ITEM)
    assert planned_keys_in(tmp_path / "home" / "ledger.db") == ["K-1"]
    assert "is not defined" in written.stdout + written.stderr, "the INFO line says which ledger is used"


def test_a_failing_secrets_backend_raises_instead_of_falling_back(tmp_path):
    missing = tmp_path / "no-such-connections.json"
    env = airflow_env(tmp_path, AIRFLOW__SECRETS__BACKEND="airflow.secrets.local_filesystem.LocalFilesystemBackend",
                      AIRFLOW__SECRETS__BACKEND_KWARGS=json.dumps({"connections_file_path": str(missing)}))
    failed = run(env, "-m", "ledgerlink", "planned", "--json", check=False)
    assert failed.returncode != 0
    assert "ConnectionLookupError" in failed.stderr and "LocalFilesystemBackend failed" in failed.stderr
    assert not (tmp_path / "home" / "ledger.db").exists(), "no SQLite ledger when the lookup failed"

