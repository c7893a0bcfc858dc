"""CSV for PostgreSQL's COPY, written by Arrow: the bulk path shared by loads and the ledger."""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv

BLOCK = 1 << 20


def arrow_csv(table: pa.Table) -> memoryview:
    """Header-less CSV of ``table``: nulls as unquoted empty fields, strings quoted (COPY's CSV format).

    Chunks are combined first: Arrow 26's CSV writer emits NUL bytes for a header-less table whose first
    chunk is empty (what filtering an Arrow-backed frame can leave), and PostgreSQL rightly refuses them.
    """
    buffer = io.BytesIO()
    pacsv.write_csv(table.combine_chunks(), buffer, write_options=pacsv.WriteOptions(include_header=False))
    return buffer.getbuffer()


def copy_csv(cursor, statement: str, data: memoryview) -> None:
    """``COPY ... FROM STDIN WITH (FORMAT csv)`` of ready CSV bytes, in 1 MiB writes."""
    with cursor.copy(statement) as copy:
        for start in range(0, len(data), BLOCK):
            copy.write(data[start:start + BLOCK])
