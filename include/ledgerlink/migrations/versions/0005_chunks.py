"""chunks: a chunked load's chunks get their own table, out of ``items``.

Up to 0004 each chunk of a chunked (SQL) load was a row of ``items`` with a made-up key ("chunk 0001 of run
<sha>", see the code of that time: ``ledgerlink.delivery.chunk_key``), "N lines" as its content hash and
"upsert" or "delete" as its operation. Those rows move to ``chunks`` keeping their ids, so the lines recorded
under them (``snapshots`` and ``deliveries``) still name them; the columns naming them are renamed
``chunk_item_id`` -> ``chunk_id`` (a rename in place on both databases: rows, indexes and grants stay).

A chunk item is one the lines name (``snapshots``, ``deliveries``), or one with a chunk's key and "N lines" (a
chunk in flight, or one whose lines were all superseded). Its index comes from its key ("chunk 0003 of run
..." is 3, "chunk deletions of run ..." is -1); a key that gives none, or an index another moved chunk of the
same run has already (a run retried after its chunk had closed opened a second item: the newer keeps it),
leaves it without one.

On PostgreSQL the chunks' id sequence starts past the largest moved id, and the roles granted rights on
``items`` get the same on ``chunks`` (and its sequence, to plan a chunk), as 0003 did for ``flows``. Finding
the chunk items reads the snapshot once: upgrade between nightly runs.

Revision ID: 0005
Revises: 0004
"""
import re

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
# What the code up to 0004 wrote: f"chunk {'deletions' if index < 0 else f'{index:04d}'} of run {sha1[:12]}"
_CHUNK_KEY = re.compile(r"chunk (\d+|deletions) of run [0-9a-f]+")
_LINES = re.compile(r"(\d+) lines")


def upgrade() -> None:
    connection = op.get_bind()
    op.create_table(
        "chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("target", sa.String(50), nullable=False),
        sa.Column("entity", sa.String(50), nullable=False),
        sa.Column("chunk_index", sa.Integer),
        sa.Column("operation", sa.String(10), nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("planned_at", _WHEN, nullable=False),
        sa.Column("sent_at", _WHEN),
        sa.Column("acknowledged_at", _WHEN),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_index("ux_chunks_run_index", "chunks", ["flow", "run_id", "chunk_index"], unique=True)
    op.create_index("ix_chunks_updated_at", "chunks", ["updated_at"])
    moved = _chunk_items(connection)
    ids = [chunk["id"] for chunk in moved]
    for start in range(0, len(ids), 900):  # the rows copied as they are (SQLite keeps times as text)
        connection.execute(sa.text(
            "INSERT INTO chunks (id, run_id, flow, target, entity, operation, lines, status, attempts, last_error, "
            "planned_at, sent_at, acknowledged_at, updated_at) SELECT id, run_id, flow, target, entity, operation, "
            "0, status, attempts, last_error, planned_at, sent_at, acknowledged_at, updated_at FROM items "
            "WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids[start:start + 900]})
    if moved:
        connection.execute(sa.text("UPDATE chunks SET chunk_index = :chunk_index, lines = :lines WHERE id = :id"),
                           moved)
        connection.execute(sa.text("DELETE FROM items WHERE id IN (SELECT id FROM chunks)"))
    op.execute("ALTER TABLE snapshots RENAME COLUMN chunk_item_id TO chunk_id")
    op.execute("ALTER TABLE deliveries RENAME COLUMN chunk_item_id TO chunk_id")
    if connection.dialect.name == "postgresql":
        sequence = connection.scalar(sa.text("SELECT pg_get_serial_sequence('chunks', 'id')"))
        if moved:  # the next chunk planned gets the id after the largest moved one
            connection.execute(sa.text("SELECT setval(CAST(:sequence AS regclass), (SELECT max(id) FROM chunks))"),
                               {"sequence": sequence})
        _grant_as_items(connection, sequence)


def _chunk_items(connection: sa.Connection) -> list[dict]:
    """The chunk items' ids with the index and line count each gets in ``chunks``, in id order."""
    rows = connection.execute(sa.text(
        "SELECT id, flow, run_id, source_key, content_hash FROM items "
        "WHERE id IN (SELECT chunk_item_id FROM snapshots WHERE chunk_item_id IS NOT NULL) "
        "OR id IN (SELECT chunk_item_id FROM deliveries) "
        "OR (source_key LIKE 'chunk % of run %' AND content_hash LIKE '% lines') ORDER BY id")).all()
    moved, taken, uncounted = [], set(), []
    for row in reversed(rows):  # the newest of two with one index keeps it: a retry continued that one
        key = _CHUNK_KEY.fullmatch(row.source_key)
        index = None if key is None else -1 if key.group(1) == "deletions" else int(key.group(1))
        if index is not None and (row.flow, row.run_id, index) in taken:
            index = None
        taken.add((row.flow, row.run_id, index))
        lines = _LINES.fullmatch(row.content_hash or "")
        if lines is None:
            uncounted.append(row.id)
        moved.append({"id": row.id, "chunk_index": index, "lines": int(lines.group(1)) if lines else None})
    moved.reverse()
    if uncounted:  # no "N lines": as many as the ledger records under the chunk
        counted = dict.fromkeys(uncounted, 0)
        for table in ("snapshots", "deliveries"):
            for chunk_id, count in connection.execute(sa.text(
                    f"SELECT chunk_item_id, count(*) FROM {table} WHERE chunk_item_id IN :ids GROUP BY chunk_item_id"
            ).bindparams(sa.bindparam("ids", expanding=True)), {"ids": uncounted}):
                counted[chunk_id] += count
        for chunk in moved:
            if chunk["lines"] is None:
                chunk["lines"] = counted[chunk["id"]]
    return moved


def _grant_as_items(connection: sa.Connection, sequence: str) -> None:
    """PostgreSQL: the roles granted rights on ``items`` (a role the nightly loads run as, not the owner) get
    the same on ``chunks``, and the use of its sequence where they may insert."""
    grants = connection.execute(sa.text(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
        "a.privilege_type FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = 'items'::regclass AND a.grantee <> c.relowner")).all()
    for grantee, privilege in grants:  # names quoted by the server; privileges are its own keywords
        connection.execute(sa.text(f"GRANT {privilege} ON chunks TO {grantee}"))
        if privilege == "INSERT":
            connection.execute(sa.text(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {grantee}"))


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
