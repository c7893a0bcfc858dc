"""What a gate is made of: its checks, the suite that groups them, and what a run of it returns."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the registry imports this module at DAG parse time, without pandas
    import pandas as pd


@dataclass(frozen=True)
class Check:
    """One expectation: ``kind`` is the GX expectation class name, ``args`` its arguments."""

    name: str
    kind: str
    args: dict
    blocking: bool


@dataclass(frozen=True)
class Suite:
    entity: str
    key: str
    checks: tuple[Check, ...]
    # Columns computed from the batch before validation, for rules GX has no built-in for (check digits):
    # name -> values, one per row.
    derive: Callable[[pd.DataFrame], dict] | None = None

    @property
    def checked_columns(self) -> list[str]:
        """The columns the checks name, in order: all GX is given of a batch (plus the derived ones)."""
        named = []
        for check in self.checks:
            for argument in ("column", "column_A", "column_B", "column_list"):
                value = check.args.get(argument)
                named += value if isinstance(value, list) else [value] if value else []
        return list(dict.fromkeys(named))


@dataclass
class GateResult:
    passed: pd.DataFrame
    quarantined: list[tuple[str, list[str], dict]]
    failed_warning: list[str]
    report_json: Path
    report_html: Path
    evaluated_rows: int = 0
    failed_blocking: list[str] = field(default_factory=list)
    held_back: int = 0  # a gate over blocks quarantines as it goes: how many rows it held back
