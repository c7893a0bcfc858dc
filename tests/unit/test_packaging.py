"""pyproject.toml and the requirement files: the `ledgerlink` command, the Airflow entry points, and a
production install that carries no test tools."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_TOOLS = {"pytest", "hypothesis", "dlt", "import-linter"}


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-r ")):
            continue
        name, separator, version = line.partition("==")
        assert separator and version, f"{path.name}: {line!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_runtime_and_test_requirements_are_apart():
    runtime, dev = _pins(REPO / "requirements.txt"), _pins(REPO / "requirements-dev.txt")
    assert not TEST_TOOLS & set(runtime), "the production image would carry test tools"
    assert TEST_TOOLS <= set(dev)
    assert dev["import-linter"] == "2.16"
    assert not set(runtime) & set(dev), f"pinned twice: {sorted(set(runtime) & set(dev))}"
    first = next(line for line in (REPO / "requirements-dev.txt").read_text().splitlines()
                 if line and not line.startswith("#"))
    assert first == "-r requirements.txt", "the test install starts from the runtime pins"


def test_the_package_declares_the_command_and_airflows_entry_points(project):
    assert project["project"]["name"] == "ledgerlink"
    assert project["project"]["scripts"] == {"ledgerlink": "ledgerlink.cli:main"}
    entry_points = project["project"]["entry-points"]
    assert entry_points["airflow.plugins"] == {"ledgerlink": "ledgerlink.airflow_plugin:LedgerlinkPlugin"}
    assert entry_points["apache_airflow_provider"] == {"provider_info": "ledgerlink.provider_info:get_provider_info"}
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["include"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}


def test_the_installed_package_exposes_them_once():
    """`make install` installed it (editable); each entry point is found once, so Airflow registers the plugin
    once (a stray include/ledgerlink.egg-info on sys.path would make it twice, the second an import error)."""
    from airflow._shared.module_loading import entry_points_with_dist

    assert metadata.distribution("ledgerlink").version
    for group, name in (("console_scripts", "ledgerlink"), ("airflow.plugins", "ledgerlink"),
                        ("apache_airflow_provider", "provider_info")):
        found = [ep for ep, dist in entry_points_with_dist(group) if ep.name == name and dist.name == "ledgerlink"]
        assert len(found) == 1, f"{group} {name}: found {len(found)} times (remove include/*.egg-info)"


def test_the_plugin_is_an_airflow_plugin_with_the_ledger_page():
    from airflow.plugins_manager import AirflowPlugin

    from ledgerlink.airflow_plugin import LedgerlinkPlugin

    assert issubclass(LedgerlinkPlugin, AirflowPlugin)
    assert LedgerlinkPlugin.name == "ledgerlink"
    assert [a["url_prefix"] for a in LedgerlinkPlugin.fastapi_apps] == ["/ledgerlink"]
    assert [v["href"] for v in LedgerlinkPlugin.external_views] == ["ledgerlink/"]
    assert "Exchange ledger page" in sys.modules[LedgerlinkPlugin.__module__].__doc__


def test_importing_the_plugin_loads_nothing_of_ledgerlink_else():
    script = ("import sys, ledgerlink.airflow_plugin, ledgerlink.provider_info; "
              "print('loaded:', sorted(m for m in sys.modules if m.startswith('ledgerlink')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=REPO)
    loaded = next(line for line in result.stdout.splitlines() if line.startswith("loaded:"))
    assert loaded == "loaded: ['ledgerlink', 'ledgerlink.airflow_plugin', 'ledgerlink.provider_info']"


def test_the_provider_names_the_package_and_claims_no_connection_type_of_another():
    from ledgerlink.provider_info import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == metadata.distribution("ledgerlink").name
    assert info["name"] and info["description"]
    # Our hooks use "postgres" and "http", which PostgresHook and HttpHook own: none is listed until one has
    # a connection type of its own.
    assert "connection-types" not in info


def test_the_command_runs():
    command = Path(sys.executable).with_name("ledgerlink")
    result = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.startswith("usage: ledgerlink ")
    for name in ("history", "planned", "quarantine", "runs", "summary"):
        assert name in result.stdout
