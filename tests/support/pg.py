"""The throwaway PostgreSQL cluster now lives in ``devtools.pg`` (the bench uses it too); import it from there."""
from devtools.pg import PgInfo, PostgresStartError, create_database, find_server_binaries, run_postgres

__all__ = ["PgInfo", "PostgresStartError", "create_database", "find_server_binaries", "run_postgres"]
