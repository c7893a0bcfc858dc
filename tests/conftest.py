"""Make ``include/`` (the ``ledgerlink`` and ``sandbox`` packages) and the repository root importable."""
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
for entry in (REPO_ROOT / "include", REPO_ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))
