"""CSV for COPY, written by Arrow."""
from __future__ import annotations

import pyarrow as pa

from ledgerlink.copyio import csv_slices


def test_a_table_whose_first_chunk_is_empty_is_written_without_nul_bytes():
    # What filtering an Arrow-backed frame leaves; Arrow's header-less CSV writer garbles it if not combined.
    keys = pa.chunked_array([pa.array([], pa.large_string()), pa.array(["L1", "L2", None], pa.large_string())])
    amounts = pa.chunked_array([pa.array([10, 20, 30], pa.int64())])
    data = b"".join(csv_slices(pa.table({"key": keys, "amount": amounts}), rows=2))
    assert data == b'"L1",10\n"L2",20\n,30\n'  # in two slices
