"""What one step of a run hands the next: typed, and plain JSON for XCom (the data itself stays in staged files).

Airflow's XCom serialiser would turn a Decimal into a float, so money crosses as exact decimal text; staged
Arrow and JSON files are named by their paths.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Outcomes:
    """What the load did: every change sent ends as exactly one of these (held-back rows are counted by the gate)."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    already_in_target: int = 0
    held_back: int = 0  # held back by the target adapter (an edit made in the target, a missing reference)
    rejected: int = 0


@dataclass
class RunState:
    run_id: str
    read: int = 0  # records read from the source this run
    source_keys: int = 0  # records the source holds
    new: int = 0  # change tracking: records not yet in the target, changed ones, unchanged ones,
    changed: int = 0  # and records the target holds that the source no longer has
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0  # held back by the gate
    initial: bool = False  # a first load (nothing acknowledged yet)
    watermark_read: str | None = None  # the highest source timestamp read
    batch: list[str] = field(default_factory=list)  # staged Arrow files: the records (then the changes) by chunk
    deletions: str | None = None  # staged JSON: keys to delete (with their target keys where the flow has them)
    headers: list[str] = field(default_factory=list)  # staged Arrow files of related state the load records
    gate_report: str = ""
    outcomes: Outcomes | None = None  # set by the load
    sent_totals: list[dict[str, str]] = field(default_factory=list)  # money sent per currency and VAT rate, as text
    documents: str | None = None  # staged JSON: documents built this run by key (e-invoices: the UBL-TR XML)
    changed_amounts: list[dict] = field(default_factory=list)  # updated records' money, old -> new, as text
    params: dict = field(default_factory=dict)  # the run's trigger params (flows.params.RunParams.as_dict)

    @property
    def changes(self) -> int:
        """Changes found this run: new, changed and deleted records (held-back ones among the new and changed)."""
        return self.new + self.changed + self.deleted

    def to_xcom(self) -> dict:
        return asdict(self)

    @classmethod
    def from_xcom(cls, data: dict) -> RunState:
        known = {f.name for f in fields(cls)}
        if "parts" in data or isinstance(data.get("batch"), str):
            data = _from_untyped(data)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"run state from XCom has fields this version does not know: {sorted(unknown)}")
        values = dict(data)
        if values.get("outcomes") is not None:
            values["outcomes"] = Outcomes(**values["outcomes"])
        return cls(**values)


_OUTCOME_KEYS = {f.name for f in fields(Outcomes)}


def _from_untyped(data: dict) -> dict:
    """The dict a step wrote before the state was typed (a run retried across the upgrade): staged files under
    ``parts``/``batch`` (a path, or a list), headers as one path, the load's counts at the top level."""
    values = {k: v for k, v in data.items() if k not in _OUTCOME_KEYS | {"parts", "quarantined_since", "rejected"}}
    batch = data.get("parts", data.get("batch"))
    values["batch"] = [batch] if isinstance(batch, str) else list(batch or [])
    headers = data.get("headers")
    values["headers"] = [headers] if isinstance(headers, str) else list(headers or [])
    if "created" in data:
        values["outcomes"] = {k: data.get(k, 0) for k in _OUTCOME_KEYS}
    return values
