"""flows; snapshots name their flow by id and hold each chunked line's latest delivery; deliveries indexed by
chunk and key (the runner's version 3).

Existing snapshot rows keep no chunk: their deliveries are in ``deliveries`` already, so none is listed twice.
A snapshot that has ``flow_id`` already (a ledger the runner created at version 1 with the models of its day)
is left as it is.

On a big ledger this rewrites the snapshot and indexes the whole history once, blocking writes meanwhile:
upgrade between nightly runs.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

from ledgerlink.migrations import record_legacy_version

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DESCRIPTION = ("flows; snapshots name their flow by id and hold each chunked line's latest delivery; "
                "deliveries indexed by chunk and key")


def upgrade() -> None:
    connection = op.get_bind()
    op.create_table(
        "flows",
        sa.Column("id", sa.SmallInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
    )
    op.execute("DROP INDEX IF EXISTS ix_deliveries_chunk_item")  # schema 2's BRIN
    op.create_index("ix_deliveries_chunk", "deliveries", ["chunk_item_id"], if_not_exists=True)
    op.create_index("ix_deliveries_source_key", "deliveries", ["source_key"], if_not_exists=True)
    if "flow_id" not in {column["name"] for column in sa.inspect(connection).get_columns("snapshots")}:
        op.execute("INSERT INTO flows (name) SELECT DISTINCT flow FROM snapshots ORDER BY flow")
        if connection.dialect.name == "postgresql":
            _snapshots_by_flow_id_in_place(connection)
        else:
            _snapshots_by_flow_id_rebuilt(connection)
    record_legacy_version(3, _DESCRIPTION)


def _snapshots_by_flow_id_in_place(connection: sa.Connection) -> None:
    """PostgreSQL: the table altered in place, so a ledger role granted rights on it keeps them; the roles
    granted rights on it get the same on ``flows`` (and its sequence, to name a new flow)."""
    connection.execute(sa.text("ALTER TABLE snapshots ADD COLUMN flow_id SMALLINT, ADD COLUMN chunk_item_id BIGINT, "
                               "ADD COLUMN operation VARCHAR(10)"))
    connection.execute(sa.text("UPDATE snapshots s SET flow_id = f.id FROM flows f WHERE f.name = s.flow"))
    connection.execute(sa.text("ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey, DROP COLUMN flow, "
                               "ALTER COLUMN flow_id SET NOT NULL, "
                               "ALTER COLUMN acknowledged_at SET DEFAULT CURRENT_TIMESTAMP"))
    connection.execute(sa.text("ALTER TABLE snapshots ADD PRIMARY KEY (flow_id, source_key)"))
    grants = connection.execute(sa.text(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
        "a.privilege_type FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = 'snapshots'::regclass AND a.grantee <> c.relowner")).all()
    sequence = connection.scalar(sa.text("SELECT pg_get_serial_sequence('flows', 'id')"))
    for grantee, privilege in grants:  # names quoted by the server; privileges are its own keywords
        connection.execute(sa.text(f"GRANT {privilege} ON flows TO {grantee}"))
        if privilege == "INSERT":
            connection.execute(sa.text(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {grantee}"))
    connection.execute(sa.text("ANALYZE snapshots"))  # the next night's key lookups plan on the new shape


def _snapshots_by_flow_id_rebuilt(connection: sa.Connection) -> None:
    """SQLite cannot change a primary key: the table is rebuilt."""
    connection.execute(sa.text("ALTER TABLE snapshots RENAME TO snapshots_schema_2"))
    op.create_table(
        "snapshots",
        sa.Column("flow_id", sa.SmallInteger, primary_key=True),
        sa.Column("source_key", sa.String(200), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("target_key", sa.String(200)),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("chunk_item_id", sa.BigInteger),
        sa.Column("operation", sa.String(10)),
    )
    connection.execute(sa.text(
        "INSERT INTO snapshots (flow_id, source_key, content_hash, target_key, acknowledged_at) "
        "SELECT f.id, s.source_key, s.content_hash, s.target_key, s.acknowledged_at "
        "FROM snapshots_schema_2 s JOIN flows f ON f.name = s.flow"))
    connection.execute(sa.text("DROP TABLE snapshots_schema_2"))


def downgrade() -> None:
    raise NotImplementedError("the ledger is not downgraded: restore a backup taken before the upgrade")
