"""The ledger: what went where, when, with what result; what is planned; what was held back.

Its own database (SQLite by default, PostgreSQL by URL). An item (a record sent on its own) or a chunk (of a
chunked SQL load's lines) stays unacknowledged until the receiver confirms it, as 1C's exchange plans do; the
snapshot of acknowledged content hashes (what change tracking compares against) moves only in the same
transaction as that acknowledgement.

The package: :mod:`~ledgerlink.ledger.models` (the tables and the statuses), :mod:`~ledgerlink.ledger.engine`
(where the ledger lives, its engine's tuning), :class:`Ledger` in :mod:`~ledgerlink.ledger.repository` with its
parts (:mod:`~ledgerlink.ledger.runs`, :mod:`~ledgerlink.ledger.snapshots`, :mod:`~ledgerlink.ledger.items`,
:mod:`~ledgerlink.ledger.chunks`), and :mod:`~ledgerlink.ledger.postgres` (the PostgreSQL bulk paths).
Everything is imported from here, as it was from the single module before; the schema is migrated by
:mod:`ledgerlink.migrations`.
"""
from __future__ import annotations

from ledgerlink.ledger.chunks import describe_chunk
# The e-invoice register's tables belong to the same schema (its models register on Base here).
from ledgerlink.ledger.einvoices import EInvoiceRegister
from ledgerlink.ledger.engine import LEDGER_CONN_ID, _make_engine, default_ledger_url
from ledgerlink.ledger.models import (ABANDONED, ACKNOWLEDGED, BLOCKED, CREATE, DELETE, FAILED, LEASE_DURATION,
                                      OPEN_STATUSES, PLANNED, QUARANTINED, REJECTED, RUNNING, SENT, SUCCEEDED,
                                      SUPERSEDED, UPDATE, UPSERT, Base, Chunk, Flow, FlowLease, Item,
                                      PlannedChange, QuarantinedRow, Run, SchemaVersion, Snapshot, Validation,
                                      Watermark, deliveries, utcnow)
from ledgerlink.ledger.repository import Ledger
from ledgerlink.ledger.usage_files import UsageFile, UsageFiles  # its table is part of the schema (revision 0006)

# _make_engine is private but imported from here by ledgerlink.migrations (migrate builds the same engine).
__all__ = [
    "ABANDONED", "ACKNOWLEDGED", "BLOCKED", "CREATE", "DELETE", "FAILED", "LEASE_DURATION", "OPEN_STATUSES",
    "PLANNED", "QUARANTINED", "REJECTED", "RUNNING", "SENT", "SUCCEEDED", "SUPERSEDED", "UPDATE", "UPSERT",
    "Base", "Chunk", "Flow", "FlowLease", "Item", "QuarantinedRow", "Run", "SchemaVersion", "Snapshot", "Validation",
    "UsageFile", "UsageFiles", "Watermark", "deliveries",
    "LEDGER_CONN_ID", "default_ledger_url", "Ledger", "PlannedChange", "describe_chunk", "utcnow",
    "EInvoiceRegister",
]
