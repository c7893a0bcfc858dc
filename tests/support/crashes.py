"""Shared pieces of the crash and property tests."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from sandbox.generator import generate_billing


class SimulatedCrash(BaseException):
    """Stands for the process dying: a BaseException, so no handler of ours can swallow it."""


@functools.cache
def seeded_billing(seed: int, customers: int) -> Path:
    """A billing SQLite file generated once per test process; tests copy it rather than regenerate it."""
    folder = Path(tempfile.mkdtemp(prefix=f"ll-billing-{seed}-{customers}-"))
    generate_billing(folder / "billing.db", seed=seed, customers=customers)
    return folder / "billing.db"
