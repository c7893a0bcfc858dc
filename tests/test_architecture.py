"""The architecture, enforced: import-linter's contracts in pyproject.toml ([tool.importlinter]) hold.

The contracts: the product and the stand-ins never import each other, nor the development code; a system
package (onec, billing, erp) imports core, never another system; only the layers above the systems import
one; the layers (entry points > flows > task glue > systems > core) import downwards only; the bench uses
no test helpers. Each contract is also shown to break when a forbidden import is added to a copy of the code.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
# What the contracts read: the root packages (ledgerlink and sandbox under include/) and the config.
COPIED = ("include", "devtools", "bench", "tests", "pyproject.toml")


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    if found.exists():
        return str(found)
    return shutil.which("lint-imports") or pytest.fail("lint-imports is not installed (requirements-dev.txt)")


def _run(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    """lint-imports over the code under ``root``: its include/ comes first on the path, the root packages
    bench, devtools and tests are found from the working folder."""
    command = [_lint_imports(), "--config", str(root / "pyproject.toml"), "--no-cache", "--no-logo"]
    for contract in contracts:
        command += ["--contract", contract]
    env = dict(os.environ, PYTHONPATH=str(root / "include"))
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _config() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]


def test_the_import_contracts_hold():
    result = _run(REPO)
    assert result.returncode == 0, f"an import contract is broken:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout


def test_every_module_of_ledgerlink_sits_in_one_layer():
    """A new module is placed in a layer on purpose, not left unchecked by the layers contract."""
    (layers,) = [c["layers"] for c in _config()["contracts"] if c["id"] == "layers"]
    placed = [name.strip() for layer in layers for name in layer.replace("|", ":").split(":")]
    package = REPO / "include" / "ledgerlink"
    modules = {f"ledgerlink.{path.stem}" for path in package.glob("*.py") if path.stem != "__init__"}
    modules |= {f"ledgerlink.{path.parent.name}" for path in package.glob("*/__init__.py")}
    assert sorted(placed) == sorted(set(placed)), "a module is in two layers"
    assert modules == set(placed), (f"not in a layer: {sorted(modules - set(placed))}; "
                                    f"in a layer but gone: {sorted(set(placed) - modules)}")


FORBIDDEN = [
    ("product-and-stand-ins", "include/sandbox/crm.py", "from ledgerlink import errors", "sandbox.crm"),
    ("product-and-stand-ins", "include/ledgerlink/tracking.py", "import sandbox.generator", "ledgerlink.tracking"),
    ("no-dev-code-in-production", "include/ledgerlink/report.py", "from devtools import pg", "ledgerlink.report"),
    ("systems-independent", "include/ledgerlink/onec/client.py", "from ledgerlink.erp import invoice_lines",
     "ledgerlink.onec.client"),
    ("core-imports-no-system", "include/ledgerlink/report.py", "from ledgerlink.billing import figures",
     "ledgerlink.report"),
    # imported inside a function, as cli.py and tasks.py do: import-linter sees those too
    ("layers", "include/ledgerlink/ledger/repository.py",
     "def _late():\n    from ledgerlink.flows import customers_to_onec", "ledgerlink.ledger.repository"),
    ("bench-uses-no-test-helpers", "bench/run.py", "from tests.support.pg import run_postgres", "bench.run"),
]


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("architecture")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    return root


@pytest.mark.parametrize("contract, path, line, importer", FORBIDDEN, ids=[f"{c}:{i}" for c, _, _, i in FORBIDDEN])
def test_a_forbidden_import_breaks_its_contract(copy, contract, path, line, importer):
    original = (copy / path).read_text(encoding="utf-8")
    assert _run(copy, contract).returncode == 0, "the copy keeps the contract before the import is added"
    (copy / path).write_text(f"{original}\n\n{line}\n", encoding="utf-8")
    try:
        result = _run(copy, contract)
    finally:
        (copy / path).write_text(original, encoding="utf-8")
    assert result.returncode == 1, f"{contract} kept despite {importer}: {line!r}\n{result.stdout}{result.stderr}"
    assert "BROKEN" in result.stdout and importer in result.stdout, result.stdout
