"""The ledger's runs and each flow's lease: one run per flow at a time, and how each run ended."""
from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from ledgerlink.ledger.models import ABANDONED, LEASE_DURATION, RUNNING, FlowLease, LedgerPart, Run, utcnow


class Runs(LedgerPart):
    """Runs and the flow's lease: part of :class:`~ledgerlink.ledger.Ledger`, which gives it ``engine``."""

    def start_run(self, run_id: str, flow: str) -> None:
        """Open the run (a retry continues it) and take the flow's lease: :class:`FlowBusy` when another run
        of the flow holds it. Runs of the flow still 'running' without the lease (killed before anything could
        close them) are closed as abandoned."""
        self.hold_lease(flow, run_id)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(sa.update(Run).where(Run.flow == flow, Run.status == RUNNING, Run.run_id != run_id).values(
                status=ABANDONED, finished_at=now,
                summary=json.dumps({"error": f"abandoned: the run stopped before its end; run {run_id} took over"})))
            existing = conn.execute(sa.select(Run).where(Run.run_id == run_id, Run.flow == flow)).first()
            if existing is None:
                conn.execute(sa.insert(Run).values(run_id=run_id, flow=flow, started_at=now, status=RUNNING))
            else:  # a retry of the same run
                conn.execute(sa.update(Run).where(Run.run_id == run_id, Run.flow == flow).values(
                    status=RUNNING, finished_at=None))

    def hold_lease(self, flow: str, run_id: str, lease_for: timedelta = LEASE_DURATION) -> None:
        """Take or renew the flow's lease for this run (each task of a run calls it before it changes anything).

        Atomic on SQLite and PostgreSQL alike: a conditional UPDATE takes a lease that is ours or expired, else
        an INSERT takes a free one; a second run racing for it hits the primary key and is told who holds it.
        """
        now = utcnow()
        values = {"run_id": run_id, "acquired_at": now, "expires_at": now + lease_for}
        with self.engine.begin() as conn:
            # A run replayed after a later run of the flow started (a cleared task of an old DAG run) would bring
            # back older data and move the watermark back: it never takes the lease again.
            started = conn.scalar(sa.select(Run.started_at).where(Run.run_id == run_id, Run.flow == flow))
            if started is not None:
                later = conn.scalar(sa.select(Run.run_id).where(Run.flow == flow, Run.started_at > started)
                                    .order_by(Run.started_at).limit(1))
                if later is not None:
                    from ledgerlink.errors import RunSuperseded

                    raise RunSuperseded(flow, run_id, later)
            taken = conn.execute(sa.update(FlowLease).where(
                FlowLease.flow == flow, sa.or_(FlowLease.run_id == run_id, FlowLease.expires_at < now))
                .values(**values)).rowcount
            if taken:
                return
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(FlowLease).values(flow=flow, **values))
                return
            except sa.exc.IntegrityError:
                holder = conn.execute(sa.select(FlowLease).where(FlowLease.flow == flow)).first()
        from ledgerlink.errors import FlowBusy

        raise FlowBusy(flow, holder.run_id if holder else "another run", holder.acquired_at if holder else None,
                       holder.expires_at if holder else None)

    def finish_run(self, run_id: str, flow: str, status: str, summary: dict) -> None:
        """Close the run with its status and summary, and release the flow's lease."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(Run).where(Run.run_id == run_id, Run.flow == flow).values(
                finished_at=utcnow(), status=status, summary=json.dumps(summary, default=str, ensure_ascii=False)))
            conn.execute(sa.delete(FlowLease).where(FlowLease.flow == flow, FlowLease.run_id == run_id))

    def end_run_early(self, run_id: str, flow: str, status: str, reason: str) -> bool:
        """A run that stops before its summary (a blocked gate, a crash, a failed task): its status and why,
        unless it already ended; the lease is released. Returns whether the run's status changed."""
        with self.engine.begin() as conn:
            changed = conn.execute(sa.update(Run).where(Run.run_id == run_id, Run.flow == flow,
                                                        Run.status == RUNNING).values(
                finished_at=utcnow(), status=status,
                summary=json.dumps({"error": reason[:4000]}, ensure_ascii=False))).rowcount
            conn.execute(sa.delete(FlowLease).where(FlowLease.flow == flow, FlowLease.run_id == run_id))
        return bool(changed)

    def runs(self, flow: str | None = None) -> list[dict]:
        query = sa.select(Run).order_by(Run.started_at)
        if flow:
            query = query.where(Run.flow == flow)
        return self._dicts(query)
