"""The ledger's record of every CDR file taken from the bridge: its content hash (its identity), its name, and
what became of it. Part of :class:`~ledgerlink.ledger.Ledger`'s schema (revision 0006), with its own small
repository, :class:`UsageFiles`, so the ledger's other parts stay as they are."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from ledgerlink.ledger.models import Base, QuarantinedRow, serial_id, utcnow

# What became of a file: its rows are in billing; a correction under the same name took its place; its content
# was taken before under another name (nothing loaded); it could not be read or its gate blocked it (nothing
# loaded, moved to error/).
LOADED, REPLACED, DUPLICATE, REFUSED = "loaded", "replaced", "duplicate", "refused"
TAKEN = (LOADED, REPLACED)  # content already taken: the same bytes again are a duplicate


class UsageFile(Base):
    __tablename__ = "usage_files"
    id: orm.Mapped[int] = serial_id()
    flow: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    sha256: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    size: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    period: orm.Mapped[str | None] = orm.mapped_column(sa.String(7))
    rows_loaded: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    rows_held_back: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    reason: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    duplicate_of: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    run_id: orm.Mapped[str] = orm.mapped_column(sa.String(250))
    taken_at: orm.Mapped[datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    rated_at: orm.Mapped[datetime | None] = orm.mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_usage_files_flow_sha256", "flow", "sha256"),
        sa.Index("ix_usage_files_flow_name", "flow", "name"),
    )


class UsageFiles:
    """The files a flow took, over the ledger's engine."""

    def __init__(self, engine: sa.Engine, flow: str):
        self.engine = engine
        self.flow = flow

    def _rows(self, *where) -> list[dict]:
        query = sa.select(UsageFile).where(UsageFile.flow == self.flow, *where).order_by(UsageFile.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.with_only_columns(*UsageFile.__table__.c))]

    def all(self) -> list[dict]:
        return self._rows()

    def taken_with_content(self, sha256: str) -> dict | None:
        """The first file taken with these bytes (loaded, or since replaced), or None."""
        found = self._rows(UsageFile.sha256 == sha256, UsageFile.status.in_(TAKEN))
        return found[0] if found else None

    def loaded_under_name(self, name: str) -> dict | None:
        """The file whose rows billing holds under this name now, or None."""
        found = self._rows(UsageFile.name == name, UsageFile.status == LOADED)
        return found[-1] if found else None

    def record(self, *, name: str, sha256: str, size: int, status: str, run_id: str, period: str | None = None,
               rows_loaded: int = 0, rows_held_back: int = 0, reason: str | None = None,
               duplicate_of: str | None = None, replaces: int | None = None) -> None:
        """Record what became of a file (once per content and name: a rerun after a crash updates the row it
        wrote), and mark the file it replaces."""
        values = dict(flow=self.flow, name=name, sha256=sha256, size=size, status=status, period=period,
                      rows_loaded=rows_loaded, rows_held_back=rows_held_back, reason=reason,
                      duplicate_of=duplicate_of, run_id=run_id, taken_at=utcnow(), rated_at=None)
        with self.engine.begin() as conn:
            if replaces is not None:
                conn.execute(sa.update(UsageFile).where(UsageFile.id == replaces).values(
                    status=REPLACED, reason=f"replaced by a corrected file under the same name ({sha256[:12]})"))
            existing = conn.scalar(sa.select(UsageFile.id).where(
                UsageFile.flow == self.flow, UsageFile.name == name, UsageFile.sha256 == sha256,
                UsageFile.status == status))
            if existing is None:
                conn.execute(sa.insert(UsageFile).values(**values))
            else:
                conn.execute(sa.update(UsageFile).where(UsageFile.id == existing).values(**values))

    def forget_held_back(self, run_id: str, name: str) -> None:
        """Forget the rows an earlier attempt of this run held back from this file: its gate is about to decide
        again (the quarantine names the file inside each row)."""
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.engine.begin() as conn:
            conn.execute(sa.delete(QuarantinedRow).where(
                QuarantinedRow.run_id == run_id, QuarantinedRow.flow == self.flow,
                QuarantinedRow.row.like(f'%"source_file": "{escaped}"%', escape="\\")))

    def unrated_periods(self) -> list[str]:
        """Periods with files loaded or replaced since they were last rated."""
        with self.engine.connect() as conn:
            return sorted(p for (p,) in conn.execute(
                sa.select(UsageFile.period).distinct().where(
                    UsageFile.flow == self.flow, UsageFile.status.in_(TAKEN), UsageFile.rated_at.is_(None),
                    UsageFile.period.is_not(None))))

    def mark_rated(self, periods: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(UsageFile).where(
                UsageFile.flow == self.flow, UsageFile.period.in_(periods), UsageFile.rated_at.is_(None),
                UsageFile.status.in_(TAKEN)).values(rated_at=utcnow()))
