"""The billing reader's helpers that need no database: reading ahead in a thread, the hash expression."""
from __future__ import annotations

import threading

import pytest

from ledgerlink.billing.extract import _read_ahead, content_hash_sql


def test_read_ahead_yields_everything_in_order():
    assert list(_read_ahead(iter(range(50)), depth=2)) == list(range(50))


def test_read_ahead_raises_the_readers_error_where_it_is_consumed():
    def failing():
        yield 1
        raise ConnectionError("server closed the connection")

    consumed = []
    with pytest.raises(ConnectionError, match="server closed"):
        for item in _read_ahead(failing()):
            consumed.append(item)
    assert consumed == [1]


def test_a_consumer_that_stops_early_stops_the_reader_before_going_on():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    ahead = _read_ahead(endless(), depth=2)
    assert next(ahead) == 0
    ahead.close()  # what happens when the extract fails half-way: the connection closes right after
    assert not any(t.name == "ledgerlink-read-ahead" for t in threading.enumerate())
    assert len(produced) <= 5  # it read at most a few batches ahead


def test_the_hash_expression_seeds_each_column_by_position_and_stands_in_for_null():
    sql = content_hash_sql(["line_id", "net_minor", "customer_id"])
    assert "coalesce(hashtextextended(CAST(l.line_id AS text), 1), 1)" in sql
    assert "coalesce(hashint8extended(CAST(l.net_minor AS bigint), 2), 2)" in sql
    assert "hashtextextended(CAST(i.customer_id AS text), 3)" in sql  # the invoice's customer
    assert sql.count(" # ") == 2
