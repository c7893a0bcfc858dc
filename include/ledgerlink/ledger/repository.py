"""The ledger's repository, :class:`Ledger`: its runs, snapshots, items and chunks (each in its own module), the
history read across items and chunks, the quarantine and the validations."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from ledgerlink.ledger.chunks import Chunks, describe_chunk
from ledgerlink.ledger.engine import _make_engine, default_ledger_url
from ledgerlink.ledger.items import Items
from ledgerlink.ledger.models import (ACKNOWLEDGED, PLANNED, QUARANTINED, REJECTED, SENT, SUPERSEDED, Flow,
                                      QuarantinedRow, Validation, utcnow)
from ledgerlink.ledger.runs import Runs
from ledgerlink.ledger.snapshots import Snapshots


# Ledger URLs found at the head revision in this process: each is checked once, not per Ledger().
_AT_HEAD: set[str] = set()


class Ledger(Runs, Snapshots, Items, Chunks):
    """Repository over the ledger database. Methods commit their own transaction.

    Its parts: the runs and the flow's lease (:mod:`~ledgerlink.ledger.runs`), the snapshots and watermarks
    (:mod:`~ledgerlink.ledger.snapshots`), the items sent per record (:mod:`~ledgerlink.ledger.items`), the
    chunks of chunked loads with their lines and the per-line history (:mod:`~ledgerlink.ledger.chunks`); on
    PostgreSQL with psycopg 3 their bulk writes take the paths in :mod:`~ledgerlink.ledger.postgres`.

    Raises :class:`~ledgerlink.errors.ConfigurationError` when the database is not at the head revision
    (``ledgerlink migrate`` upgrades it)."""

    def __init__(self, url: str | None = None):
        self.url = url or default_ledger_url()
        self.engine = _make_engine(self.url)
        # PostgreSQL with psycopg 3: bulk item and snapshot writes go through COPY (a first load's lines straight
        # into the snapshot, everything else into a temporary table first)
        self._postgres = self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg"
        self._flow_ids: dict[str, int] = {}
        if self.url not in _AT_HEAD:  # migrating is an explicit step (`ledgerlink migrate`); here only a check
            from ledgerlink.migrations import require_head

            require_head(self.engine)
            _AT_HEAD.add(self.url)

    @classmethod
    def migrated(cls, url: str | None = None) -> "Ledger":
        """The ledger at ``url`` (default: :func:`default_ledger_url`), upgraded to head first: for tests, the
        demo and the bench, which create fresh ledgers. Deployments run ``ledgerlink migrate`` instead."""
        from ledgerlink.migrations import migrate

        url = url or default_ledger_url()
        migrate(url)
        _AT_HEAD.add(url)
        return cls(url)

    def _flow_id(self, flow: str, *, create: bool = True) -> int | None:
        """The flow's id in ``flows``, created if needed (None for an unknown flow when not ``create``). It is
        created in a transaction of its own, committed before any write uses it: a write that rolls back
        cannot leave rows naming an id that was never committed."""
        if flow in self._flow_ids:
            return self._flow_ids[flow]
        with self.engine.begin() as conn:
            found = conn.scalar(sa.select(Flow.id).where(Flow.name == flow))
            if found is None and create:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(Flow).values(name=flow))
                except sa.exc.IntegrityError:
                    pass  # another process named it first
                found = conn.scalar(sa.select(Flow.id).where(Flow.name == flow))
        if found is not None:
            self._flow_ids[flow] = found
        return found

    # what went where: items and chunks together ---------------------------------------------------------
    def history(self, target: str | None = None, since: datetime | None = None, flow: str | None = None,
                entity: str | None = None, until: datetime | None = None) -> list[dict]:
        """What went where and when, with what result: every item and chunk that left the planned state, by
        time (``since`` inclusive, ``until`` exclusive). Each row has ``kind`` (item or chunk), ``what`` (an
        item's source key; a chunk described, as :func:`~ledgerlink.ledger.chunks.describe_chunk`), ``via`` (the
        request or the numbered message that carried it) and ``result`` (see :func:`result_of`)."""
        return _by(("updated_at", "id"), self._item_history(target, since, flow, entity, until),
                   self._chunk_history(target, since, flow, entity, until))

    def planned(self, target: str | None = None, entity: str | None = None, since: datetime | None = None,
                until: datetime | None = None) -> list[dict]:
        """What is waiting to go, or went without a confirmation yet (items and chunks, as :meth:`history`),
        planned within ``since``..``until``."""
        return _by(("planned_at", "id"), self._items_open(target, entity, since, until),
                   self._chunks_open(target, entity, since, until))

    # quarantine and validations --------------------------------------------------------------------
    def quarantine(self, run_id: str, flow: str, entity: str, rows: Sequence[tuple[str, list[str], dict]]) -> None:
        """Hold rows back with their reasons: (source_key, reasons, row)."""
        if not rows:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(QuarantinedRow), [
                {"run_id": run_id, "flow": flow, "entity": entity, "source_key": key,
                 "reasons": "; ".join(reasons), "row": json.dumps(row, default=str, ensure_ascii=False),
                 "created_at": now} for key, reasons, row in rows])

    def clear_quarantine(self, run_id: str, flow: str) -> None:
        """Forget what an earlier attempt of this run held back: the gate is about to decide again."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(QuarantinedRow).where(QuarantinedRow.run_id == run_id, QuarantinedRow.flow == flow))

    def quarantined(self, flow: str | None = None, run_id: str | None = None) -> list[dict]:
        query = sa.select(QuarantinedRow).order_by(QuarantinedRow.id)
        if flow:
            query = query.where(QuarantinedRow.flow == flow)
        if run_id:
            query = query.where(QuarantinedRow.run_id == run_id)
        return self._dicts(query)

    def record_validation(self, run_id: str, flow: str, entity: str, success: bool, rows: int,
                          failed_blocking: list[str], failed_warning: list[str], report_html: str,
                          report_json: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(Validation).values(
                run_id=run_id, flow=flow, entity=entity, success=success, rows=rows,
                failed_blocking=json.dumps(failed_blocking), failed_warning=json.dumps(failed_warning),
                report_html=report_html, report_json=report_json, created_at=utcnow()))

    def validations(self, flow: str | None = None) -> list[dict]:
        query = sa.select(Validation).order_by(Validation.id)
        if flow:
            query = query.where(Validation.flow == flow)
        return self._dicts(query)


def result_of(row: dict) -> str:
    """An item's or chunk's result as finance reads it: only what the target confirmed is "acknowledged"; one
    sent without an answer yet is "unconfirmed", never "sent"."""
    status, error = row["status"], row.get("last_error")
    if status == SENT:
        return "unconfirmed: sent, no answer yet" + (f" ({error})" if error else "")
    if status == PLANNED:
        return "planned" + (f" (last attempt: {error})" if error else "")
    if status == ACKNOWLEDGED:
        return f"acknowledged ({row['operation']})"
    if status == QUARANTINED:
        return f"held back: {error}"
    if status == REJECTED:
        return f"refused: {error}" if error != SUPERSEDED else "superseded: no longer needed"
    return status


def via_of(row: dict) -> str:
    """The request or message that carried an item: the numbered exchange message (file exchange), the request
    the target adapter named (OData), or the chunk's transaction."""
    if row.get("message_no") is not None:
        return f"message {row['message_no']}"
    if row.get("request"):
        return row["request"]
    return "transaction" if row["kind"] == "chunk" else ""


def _by(order: tuple[str, ...], items: list[dict], chunks: list[dict]) -> list[dict]:
    """Items and chunks in one list, each row with its ``kind``, ``what``, ``via`` and ``result``, sorted by
    ``order``."""
    rows = [{"kind": "item", "what": item["source_key"], **item} for item in items]
    rows += [{"kind": "chunk", "what": describe_chunk(chunk), **chunk} for chunk in chunks]
    for row in rows:
        row["via"], row["result"] = via_of(row), result_of(row)
    return sorted(rows, key=lambda row: tuple(row[column] for column in order))
