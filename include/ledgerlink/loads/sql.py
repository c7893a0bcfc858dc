"""Idempotent loads into SQL targets.

PostgreSQL: COPY into a temporary staging table, then one ``INSERT ... ON CONFLICT DO UPDATE`` that skips
rows whose content hash did not change (DESIGN §7: the same speed as COPY alone). SQLite: the same upsert
from an executemany into a temporary table. One transaction per call: a crash leaves all or nothing.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from ledgerlink.copyio import copy_arrow

HASH = "content_hash"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upsert_frame(engine: sa.Engine, table: str, df: pd.DataFrame, key_columns: Sequence[str],
                 columns: Sequence[str], *, expect_new: bool = False) -> int:
    """Insert or update ``df[columns]`` into ``table`` by ``key_columns``; returns the rows written or changed.

    ``expect_new``: the caller believes no row exists yet (a first load). On PostgreSQL the rows are then
    COPied straight into the table, half the work of staging + upsert; if any key does exist after all, that
    transaction rolls back whole and the staged upsert runs instead, so the result is the same either way.
    """
    if df.empty:
        return 0
    if engine.dialect.name == "postgresql":
        if expect_new and _copy_new_postgres(engine, table, df, columns):
            return len(df)
        return _upsert_postgres(engine, table, df, key_columns, columns)
    return _upsert_generic(engine, table, df, key_columns, columns)


def _conflict_sql(table: str, staging: str, key_columns, columns) -> str:
    cols = ", ".join(_quote(c) for c in columns)
    keys = ", ".join(_quote(c) for c in key_columns)
    updates = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in columns if c not in key_columns)
    changed = f"{_quote(table)}.{HASH} IS DISTINCT FROM excluded.{HASH}" if HASH in columns else "TRUE"
    return (f"INSERT INTO {_quote(table)} ({cols}) SELECT {cols} FROM {staging} WHERE true "
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates} WHERE {changed}")


def _copy_new_postgres(engine: sa.Engine, table: str, df: pd.DataFrame, columns) -> bool:
    """COPY straight into the table; False (nothing written) if a key already exists there."""
    import psycopg

    rows = pa.Table.from_pandas(df[list(columns)], preserve_index=False)
    cols = ", ".join(_quote(c) for c in columns)
    try:
        with _raw_transaction(engine) as raw, raw.cursor() as cursor:
            copy_arrow(cursor, f"COPY {_quote(table)} ({cols}) FROM STDIN WITH (FORMAT csv)", rows)
    except psycopg.errors.UniqueViolation:
        return False
    return True


def _upsert_postgres(engine: sa.Engine, table: str, df: pd.DataFrame, key_columns, columns) -> int:
    staging = "ledgerlink_staging"
    # Arrow's CSV writer: about 4x faster than DataFrame.to_csv (DESIGN §7); integers stay integers.
    rows = pa.Table.from_pandas(df[list(columns)], preserve_index=False)
    cols = ", ".join(_quote(c) for c in columns)
    with _raw_transaction(engine) as raw, raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE {staging} (LIKE {_quote(table)} INCLUDING DEFAULTS) ON COMMIT DROP")
        copy_arrow(cursor, f"COPY {staging} ({cols}) FROM STDIN WITH (FORMAT csv)", rows)
        cursor.execute(_conflict_sql(table, staging, key_columns, columns))
        return cursor.rowcount


def _upsert_generic(engine: sa.Engine, table: str, df: pd.DataFrame, key_columns, columns) -> int:
    staging = "ledgerlink_staging"
    cols = ", ".join(_quote(c) for c in columns)
    placeholders = ", ".join("?" for _ in columns)
    records = list(df[list(columns)].astype(object).where(df[list(columns)].notna(), None).itertuples(index=False, name=None))
    with _raw_transaction(engine) as raw:
        cursor = raw.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS temp.{staging}")
        cursor.execute(f"CREATE TEMP TABLE {staging} AS SELECT {cols} FROM {_quote(table)} WHERE 0")
        cursor.executemany(f"INSERT INTO {staging} ({cols}) VALUES ({placeholders})", records)
        cursor.execute(_conflict_sql(table, staging, key_columns, columns))
        written = cursor.rowcount
        cursor.execute(f"DROP TABLE temp.{staging}")
        return written


@contextlib.contextmanager
def _raw_transaction(engine: sa.Engine):
    """A DBAPI connection whose work commits only if the block finishes: all or nothing, errors untouched."""
    raw = engine.raw_connection()
    committed = False
    try:
        yield raw
        raw.commit()
        committed = True
    finally:
        if not committed:
            raw.rollback()
        raw.close()


def delete_keys(engine: sa.Engine, table: str, key_column: str, keys: Sequence[str]) -> int:
    """Delete rows by key, in one transaction."""
    if not keys:
        return 0
    deleted = 0
    statement = sa.text(f"DELETE FROM {_quote(table)} WHERE {_quote(key_column)} IN :keys").bindparams(
        sa.bindparam("keys", expanding=True))
    with engine.begin() as conn:
        for start in range(0, len(keys), 900):
            deleted += conn.execute(statement, {"keys": list(keys[start:start + 900])}).rowcount
    return deleted
