"""The sandbox world and a project-local Airflow for the end-to-end tests (one per test module)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "PYTHONPATH": str(REPO / "include"), "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "LEDGERLINK_HOME": str(base / "home"),
    })
    sandbox = base / "sandbox"
    subprocess.run([sys.executable, "-m", "sandbox", "up", "--dir", str(sandbox), "--customers", "40"],
                   env=env, check=True, cwd=REPO, capture_output=True, timeout=120)
    try:
        env.update(_read_env_file(sandbox / "connections.env"))
        migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=REPO,
                                 capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        # the ledger (SQLite in LEDGERLINK_HOME), as `make demo` and the compose init service migrate it
        ledger = subprocess.run([sys.executable, "-m", "ledgerlink", "migrate"], env=env, cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert ledger.returncode == 0, ledger.stderr[-3000:]
        yield {"env": env, "sandbox": sandbox, "home": base / "home"}
    finally:
        subprocess.run([sys.executable, "-m", "sandbox", "down", "--dir", str(sandbox)], env=env, cwd=REPO,
                       capture_output=True, timeout=60)


