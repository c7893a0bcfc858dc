"""The stand-in's infobase at rest: one SQLite file holding objects, counters and registered changes.

One connection guarded by a re-entrant lock: the HTTP server is threaded, and each request or exchange file
runs as one transaction, so a reader never sees half a write.
"""
from __future__ import annotations

import base64
import json
import sqlite3
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- insertion order, the default order of a collection
    entity_set TEXT NOT NULL,
    ref_key TEXT NOT NULL,
    data TEXT NOT NULL,                     -- the object's fields as JSON, decimals as exact text
    UNIQUE (entity_set, ref_key)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (        -- one registration per node and object, as 1C's exchange plans
    node_ref TEXT NOT NULL,
    entity_set TEXT NOT NULL,
    ref_key TEXT NOT NULL,
    data_version TEXT NOT NULL,
    deletion_mark INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    message_no INTEGER,                     -- NULL until a SelectChanges stamps it
    seq INTEGER NOT NULL,                   -- order of the last registration
    PRIMARY KEY (node_ref, entity_set, ref_key)
);
"""


@dataclass(frozen=True)
class Change:
    """A registered change of one object for one exchange node."""

    entity_set: str
    ref_key: str
    data_version: str
    deletion_mark: bool
    deleted: bool
    message_no: int | None


class Store:
    """SQLite persistence; every method runs inside ``transaction()`` (joining the caller's if any)."""

    def __init__(self, db_path: Path):
        db_path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so one request is one transaction.
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._depth = 0
        with self._lock:
            self._db.executescript(_SCHEMA_SQL)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    # objects
    def get(self, entity_set: str, ref_key: str) -> dict | None:
        with self.transaction():
            row = self._db.execute(
                "SELECT data FROM objects WHERE entity_set = ? AND ref_key = ?", (entity_set, ref_key)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, entity_set: str) -> list[dict]:
        with self.transaction():
            rows = self._db.execute(
                "SELECT data FROM objects WHERE entity_set = ? ORDER BY id", (entity_set,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def insert(self, entity_set: str, record: dict) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO objects (entity_set, ref_key, data) VALUES (?, ?, ?)",
                (entity_set, record["Ref_Key"], json.dumps(record, ensure_ascii=False)),
            )

    def update(self, entity_set: str, record: dict) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE objects SET data = ? WHERE entity_set = ? AND ref_key = ?",
                (json.dumps(record, ensure_ascii=False), entity_set, record["Ref_Key"]),
            )

    def delete(self, entity_set: str, ref_key: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM objects WHERE entity_set = ? AND ref_key = ?", (entity_set, ref_key))

    # counters
    def next_value(self, name: str) -> int:
        with self.transaction():
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1", (name,)
            )
            return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def new_data_version(self) -> str:
        """An opaque version stamp, unique per write (base64 of a counter, as 1C's look)."""
        return base64.b64encode(struct.pack(">Q", self.next_value("data_version"))).decode("ascii")

    # change registration
    def register_change(self, node_refs: list[str], entity_set: str, ref_key: str, data_version: str,
                        deletion_mark: bool, deleted: bool) -> None:
        """(Re)register an object for each node; re-registering clears the message stamp, as in 1C."""
        with self.transaction():
            seq = self.next_value("change_seq")
            self._db.executemany(
                "INSERT INTO changes (node_ref, entity_set, ref_key, data_version, deletion_mark, deleted, "
                "message_no, seq) VALUES (?, ?, ?, ?, ?, ?, NULL, ?) "
                "ON CONFLICT (node_ref, entity_set, ref_key) DO UPDATE SET data_version = excluded.data_version, "
                "deletion_mark = excluded.deletion_mark, deleted = excluded.deleted, message_no = NULL, "
                "seq = excluded.seq",
                [(node, entity_set, ref_key, data_version, int(deletion_mark), int(deleted), seq)
                 for node in node_refs],
            )

    def changes(self, node_ref: str) -> list[Change]:
        with self.transaction():
            rows = self._db.execute(
                "SELECT entity_set, ref_key, data_version, deletion_mark, deleted, message_no FROM changes "
                "WHERE node_ref = ? ORDER BY seq", (node_ref,)
            ).fetchall()
        return [Change(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5]) for r in rows]

    def stamp_changes(self, node_ref: str, message_no: int) -> None:
        """Give every unstamped change of the node this message number (1C's SelectChanges)."""
        with self.transaction():
            self._db.execute(
                "UPDATE changes SET message_no = ? WHERE node_ref = ? AND message_no IS NULL", (message_no, node_ref)
            )

    def remove_changes(self, node_ref: str, up_to_message_no: int) -> int:
        """Forget the changes stamped with a message number up to the given one; returns how many."""
        with self.transaction():
            cursor = self._db.execute(
                "DELETE FROM changes WHERE node_ref = ? AND message_no IS NOT NULL AND message_no <= ?",
                (node_ref, up_to_message_no),
            )
            return cursor.rowcount
