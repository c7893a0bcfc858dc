"""Where Ledgerlink keeps its own files: staging batches, reports, and the default ledger database."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``LEDGERLINK_HOME`` or ``./.ledgerlink``; created on first use."""
    path = Path(os.environ.get("LEDGERLINK_HOME", ".ledgerlink")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def reports_dir(flow: str, run_id: str) -> Path:
    path = home() / "reports" / flow / safe_name(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_dir(flow: str, run_id: str) -> Path:
    path = home() / "staging" / flow / safe_name(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def safe_name(text: str) -> str:
    """Run ids carry ':' and '+'; keep file names portable."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
