"""A run's trigger parameters: one customer, a date range, a dry run that plans without sending.

Set when a person triggers a DAG by hand (the UI's trigger form, ``airflow dags trigger --conf``); a scheduled
run has none. The framework honours them for every flow it runs (``keyed.KeyedFlow``, the invoice-line flow):

- ``customer``: only that customer's records travel (its key, or its lines); nothing else is compared, deleted
  or moved, and the watermark stays where it was, so the next full run still sees every other change.
- ``from_date`` / ``to_date``: only records whose date (a line's issue date; a record's last change) falls in the
  range, both ends included. Same rules as ``customer``.
- ``dry_run``: extract, gate and plan as usual; nothing is sent, nothing is recorded as sent, the watermark does
  not move. The summary says what would have gone.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING

from ledgerlink.errors import ConfigurationError

if TYPE_CHECKING:  # pandas is imported when a task filters, not when a DAG file is parsed
    import pandas as pd


def airflow_params() -> dict:
    """The DAG ``params`` every flow DAG offers on its trigger form (Airflow ``Param`` with a JSON schema)."""
    from airflow.sdk import Param

    return {
        "customer": Param(None, type=["null", "string"], title="One customer",
                          description="Only this customer's records (its billing id, e.g. C00012). Empty: all."),
        "from_date": Param(None, type=["null", "string"], format="date", title="From date",
                           description="Only records dated on or after this day (YYYY-MM-DD). Empty: no bound."),
        "to_date": Param(None, type=["null", "string"], format="date", title="To date",
                         description="Only records dated on or before this day (YYYY-MM-DD). Empty: no bound."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Plan and show what would be sent; send nothing."),
    }


@dataclass(frozen=True)
class RunParams:
    customer: str | None = None
    from_date: date | None = None
    to_date: date | None = None
    dry_run: bool = False

    @property
    def partial(self) -> bool:
        """The run looks at part of the source: deletions, watermark and whole-table checks are not its business."""
        return bool(self.customer or self.from_date or self.to_date)

    @classmethod
    def of(cls, params: Mapping | None) -> RunParams:
        """From Airflow's params (or the state's copy); blank values mean "no filter". A date that is not
        YYYY-MM-DD, or a range that ends before it starts, is refused naming the parameter."""
        params = params or {}

        def day(name: str) -> date | None:
            value = params.get(name)
            if value in (None, ""):
                return None
            try:
                return value if isinstance(value, date) else date.fromisoformat(str(value))
            except ValueError:
                raise ConfigurationError(f"trigger parameter {name}: {value!r} is not a date (YYYY-MM-DD)") from None

        customer = str(params.get("customer") or "").strip() or None
        found = cls(customer=customer, from_date=day("from_date"), to_date=day("to_date"),
                    dry_run=bool(params.get("dry_run")))
        if found.from_date and found.to_date and found.to_date < found.from_date:
            raise ConfigurationError(f"trigger parameters: to_date {found.to_date} is before from_date {found.from_date}")
        return found

    def as_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """The parameters as the summary names them ("customer C00012, 2026-11-01 .. 2026-11-30, dry run")."""
        parts = []
        if self.customer:
            parts.append(f"customer {self.customer}")
        if self.from_date or self.to_date:
            parts.append(f"{self.from_date or '…'} .. {self.to_date or '…'}")
        if self.dry_run:
            parts.append("dry run")
        return ", ".join(parts)

    def keep(self, frame: "pd.DataFrame", *, customer_column: str | None,
             date_column: str | None) -> "pd.DataFrame":
        """The rows of ``frame`` this run is about. A filter whose column the frame lacks keeps nothing: a run
        asked for one customer never sends everyone."""
        import pandas as pd

        if not self.partial or frame.empty:
            return frame
        keep = pd.Series(True, index=frame.index)
        if self.customer:
            if customer_column not in frame:
                return frame.iloc[0:0]
            keep &= frame[customer_column].astype("string") == self.customer
        if self.from_date or self.to_date:
            if date_column not in frame:
                return frame.iloc[0:0]
            # The day as written (a date or an ISO timestamp): its first ten characters, compared as text.
            days = frame[date_column].astype("string").str.slice(0, 10)
            if self.from_date:
                keep &= days >= self.from_date.isoformat()
            if self.to_date:
                keep &= days <= self.to_date.isoformat()
        return frame[keep.fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)
