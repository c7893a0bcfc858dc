"""Alembic's environment for the ledger: run only through :func:`ledgerlink.migrations.migrate`, which hands
it a connection already in a transaction (and, on PostgreSQL, holding the migration lock)."""
from alembic import context

from ledgerlink.ledger import Base
from ledgerlink.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the ledger's migrations run through `ledgerlink migrate` (ledgerlink.migrations.migrate), "
                       "which passes the connection; offline (--sql) mode is not supported")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
