"""Incremental reads from billing: rows changed since a point, and every key (to see deletions)."""
from __future__ import annotations

import io
import itertools

import pandas as pd
import sqlalchemy as sa

CUSTOMER_COLUMNS = ["customer_id", "legal_name", "country", "entity_kind", "tax_id", "kpp", "address", "city",
                    "email", "currency", "updated_at"]
INVOICE_LINE_COLUMNS = ["line_id", "invoice_id", "line_no", "customer_id", "issue_date", "tariff_id", "description",
                        "quantity", "unit_price_minor", "net_minor", "vat_rate", "vat_minor", "gross_minor",
                        "currency", "updated_at"]
INT_COLUMNS = {"line_no", "unit_price_minor", "net_minor", "vat_minor", "gross_minor"}


# The columns a line carries, with customer and date taken from its invoice.
_INVOICE_LINE_SELECT = ("SELECT " + ", ".join(f"i.{c}" if c in ("customer_id", "issue_date") else f"l.{c}"
                                              for c in INVOICE_LINE_COLUMNS)
                        + " FROM invoice_lines l JOIN invoices i ON i.invoice_id = l.invoice_id")
HEADER_COLUMNS = ["invoice_id", "customer_id", "issue_date", "updated_at"]
KEYS_PER_QUERY = 900  # SQLite binds at most 999 parameters in one statement


def _typed(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Money and counts as int64, everything else as (Arrow-backed) strings: one dtype per column, always."""
    for column in columns:
        df[column] = df[column].astype("int64" if column in INT_COLUMNS else "string")
    return df


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    return _typed(pd.DataFrame.from_records(rows, columns=columns), columns)


def _select_since(engine: sa.Engine, select: str, columns: list[str], since_column: str, changed_since: str | None,
                  order_by: str = "") -> pd.DataFrame:
    """``select`` narrowed to rows changed since a point (all rows when ``changed_since`` is None)."""
    sql, params = select, {}
    if changed_since:
        sql += f" WHERE {since_column} >= :since"
        params["since"] = changed_since
    with engine.connect() as conn:
        return _frame(conn.execute(sa.text(sql + order_by), params).all(), columns)


def _select_by_keys(engine: sa.Engine, select: str, columns: list[str], key_column: str, keys,
                    order_by: str = "") -> pd.DataFrame:
    """``select`` for these keys, whatever their updated_at, asked in slices."""
    keys = sorted(keys)
    query = sa.text(f"{select} WHERE {key_column} IN :keys{order_by}").bindparams(sa.bindparam("keys", expanding=True))
    rows = []
    with engine.connect() as conn:
        for start in range(0, len(keys), KEYS_PER_QUERY):
            rows += conn.execute(query, {"keys": keys[start:start + KEYS_PER_QUERY]}).all()
    return _frame(rows, columns)


def read_customers(engine: sa.Engine, changed_since: str | None) -> pd.DataFrame:
    return _select_since(engine, f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM customers", CUSTOMER_COLUMNS,
                         "updated_at", changed_since, " ORDER BY customer_id")


def read_customers_by_key(engine: sa.Engine, keys) -> pd.DataFrame:
    """These customers, whatever their ``updated_at``."""
    return _select_by_keys(engine, f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM customers", CUSTOMER_COLUMNS,
                           "customer_id", keys, " ORDER BY customer_id")


def read_customer_keys(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT customer_id FROM customers")))


def read_invoice_lines(engine: sa.Engine, changed_since: str | None, chunk_rows: int = 200_000):
    """Invoice lines with their invoice's customer and date, in chunks (memory stays flat)."""
    sql, params = _INVOICE_LINE_SELECT, {}
    if changed_since:
        sql += " WHERE l.updated_at >= :since"
        params["since"] = changed_since
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        yield from _copy_frames(engine, sql, changed_since, INVOICE_LINE_COLUMNS, chunk_rows)
        return
    with engine.connect().execution_options(stream_results=True) as conn:
        result = conn.execute(sa.text(sql), params)
        while rows := result.fetchmany(chunk_rows):
            yield _frame(rows, INVOICE_LINE_COLUMNS)


def read_invoice_headers(engine: sa.Engine, changed_since: str | None, chunk_rows: int = 200_000):
    """The invoice fields its lines carry (customer and date), for invoices changed since a point, in chunks."""
    sql, params = f"SELECT {', '.join(HEADER_COLUMNS)} FROM invoices", {}
    if changed_since:
        sql += " WHERE updated_at >= :since"
        params["since"] = changed_since
    with engine.connect().execution_options(stream_results=True) as conn:
        result = conn.execute(sa.text(sql), params)
        while rows := result.fetchmany(chunk_rows):
            yield _frame(rows, HEADER_COLUMNS)


def read_invoice_lines_by_key(engine: sa.Engine, keys: list[str], key: str = "l.line_id") -> pd.DataFrame:
    """Invoice lines by line key (or by ``key="l.invoice_id"``), whatever their updated_at."""
    return _select_by_keys(engine, _INVOICE_LINE_SELECT, INVOICE_LINE_COLUMNS, key, keys)


class _CopyStream(io.RawIOBase):
    """A read-only file over psycopg's ``COPY ... TO STDOUT`` blocks, for Arrow's streaming CSV reader."""

    def __init__(self, blocks):
        self._blocks = iter(blocks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(bytes(block))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _copy_frames(engine: sa.Engine, sql: str, changed_since: str | None, columns: list[str], chunk_rows: int):
    """PostgreSQL: ``COPY (SELECT ...) TO STDOUT`` parsed by Arrow in a stream; the same frames as ``_frame``.

    About 4x faster than fetching rows through the driver (DESIGN §7); memory stays one chunk.
    """
    import pyarrow as pa

    types = {c: (pa.int64() if c in INT_COLUMNS else pa.string()) for c in columns}
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            from psycopg import sql as pgsql

            statement = pgsql.SQL(f"COPY ({sql.replace(':since', '{since}')}) TO STDOUT WITH (FORMAT csv)")
            copy_sql = statement.format(since=pgsql.Literal(changed_since)) if changed_since else statement
            with cursor.copy(copy_sql) as copy:
                blocks = iter(copy)
                first = next(blocks, None)
                # Nothing changed: no reader is opened (Arrow refuses an empty CSV stream).
                if first is not None:
                    yield from _arrow_chunks(itertools.chain([first], blocks), columns, types, chunk_rows)
        raw.commit()
    finally:
        raw.close()


def _arrow_chunks(blocks, columns: list[str], types: dict, chunk_rows: int):
    """Frames of ``chunk_rows`` lines parsed by Arrow's streaming CSV reader from COPY's blocks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(
        io.BufferedReader(_CopyStream(blocks), buffer_size=1 << 20),
        # 1 MiB blocks: the streaming reader reads several blocks ahead, and with 8 MiB ones that read-ahead
        # alone held ~400 MB (peak 654 MB reading 5M lines, against 335 MB with 1 MiB blocks, no slower).
        read_options=pacsv.ReadOptions(column_names=columns, block_size=1 << 20),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                             quoted_strings_can_be_null=False))
    pending, pending_rows = [], 0
    for record_batch in reader:
        pending.append(record_batch)
        pending_rows += record_batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield _arrow_frame(table.slice(0, chunk_rows), columns)
            rest = table.slice(chunk_rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows:
        yield _arrow_frame(pa.Table.from_batches(pending), columns)


def _arrow_frame(table, columns: list[str]) -> pd.DataFrame:
    return _typed(table.to_pandas(), columns)


def read_invoice_line_keys(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("SELECT line_id FROM invoice_lines")))


def source_key_fingerprint(engine: sa.Engine) -> tuple[int, int | None]:
    """(count, sum of 64-bit hashes) of every invoice line key; the sum is None where the database can't."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            count, total = conn.execute(sa.text(
                "SELECT count(*), coalesce(sum(hashtextextended(line_id, 0)), 0) FROM invoice_lines")).one()
            return int(count), int(total)
        return int(conn.scalar(sa.text("SELECT count(*) FROM invoice_lines"))), None


def key_fingerprint(engine: sa.Engine, keys: list[str]) -> int:
    """The same hash sum over given keys, computed by the same database (0 where it can't)."""
    if not keys or engine.dialect.name != "postgresql":
        return 0
    with engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT coalesce(sum(hashtextextended(k, 0)), 0) FROM unnest(CAST(:keys AS text[])) AS k"),
                               {"keys": list(keys)}))
