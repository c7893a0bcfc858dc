"""Change tracking: new, changed, deleted and unchanged from one extract; the watermark never skips a row."""
from __future__ import annotations

import pandas as pd

from ledgerlink import tracking


def _batch(rows):
    df = pd.DataFrame(rows, columns=["id", "amount", "updated_at"]).astype({"id": "string", "amount": "int64",
                                                                           "updated_at": "string"})
    return tracking.with_keys_and_hashes(df, ["id"], ["id", "amount"])


def test_diff_sorts_new_changed_deleted_and_unchanged():
    before = _batch([("a", 1, "2026-01-01T00:00:00+00:00"), ("b", 2, "2026-01-01T00:00:00+00:00"),
                     ("c", 3, "2026-01-01T00:00:00+00:00")])
    snapshot = {k: (h, f"T-{k}") for k, h in zip(before["_key"], before["_hash"])}
    now = _batch([("a", 1, "2026-01-02T00:00:00+00:00"), ("b", 20, "2026-01-02T00:00:00+00:00"),
                  ("d", 4, "2026-01-02T00:00:00+00:00")])
    changes = tracking.diff(now, snapshot, all_source_keys={"a", "b", "d"})
    assert list(changes.new["_key"]) == ["d"]
    assert list(changes.changed["_key"]) == ["b"]
    assert changes.deleted == ["c"] and changes.target_keys == {"c": "T-c"}
    assert changes.unchanged == 1


def test_hash_ignores_columns_outside_the_content_and_sees_nulls():
    a = _batch([("a", 1, "2026-01-01T00:00:00+00:00")])
    b = _batch([("a", 1, "2026-02-01T00:00:00+00:00")])
    assert a["_hash"][0] == b["_hash"][0], "a touched timestamp alone does not travel"
    with_null = tracking.with_keys_and_hashes(pd.DataFrame({"id": ["a"], "note": [None]}, dtype="string"),
                                              ["id"], ["id", "note"])
    with_text = tracking.with_keys_and_hashes(pd.DataFrame({"id": ["a"], "note": ["None"]}, dtype="string"),
                                              ["id"], ["id", "note"])
    assert with_null["_hash"][0] != with_text["_hash"][0]


def test_composite_keys_join_with_a_separator():
    df = pd.DataFrame({"contract": ["K1", "K1"], "tariff": ["T1", "T2"]}, dtype="string")
    assert list(tracking.record_keys(df, ["contract", "tariff"])) == ["K1|T1", "K1|T2"]


def test_watermark_is_the_highest_value_read_and_reads_overlap():
    batch = _batch([("a", 1, "2026-03-01T10:00:00+00:00"), ("b", 2, "2026-03-01T11:00:00+00:00")])
    assert tracking.next_watermark(batch, "updated_at", "2026-02-01T00:00:00+00:00") == "2026-03-01T11:00:00+00:00"
    assert tracking.next_watermark(batch.iloc[0:0], "updated_at", "2026-02-01T00:00:00+00:00") == \
        "2026-02-01T00:00:00+00:00", "an empty read never moves the watermark"
    assert tracking.read_from("2026-03-01T11:00:00+00:00") == "2026-03-01T10:50:00+00:00"
    assert tracking.read_from(None) is None


def test_timestamps_compare_as_moments_not_text():
    # 05:30+03:00 is 02:30 UTC: earlier than 04:00 UTC, though it sorts later as text.
    assert tracking.earliest("2026-11-01T05:30:00+03:00", "2026-11-01T04:00:00+00:00", None) == \
        "2026-11-01T05:30:00+03:00"
    batch = _batch([("a", 1, "2026-11-01T05:30:00+03:00"), ("b", 2, "2026-11-01T04:00:00+00:00")])
    assert tracking.next_watermark(batch, "updated_at", None) == "2026-11-01T04:00:00+00:00"
    assert tracking.read_from("2026-11-01T05:30:00+03:00") == "2026-11-01T02:20:00+00:00"
    # fractions of a second and a Z count; a missing timestamp is no moment at all
    batch = _batch([("a", 1, "2026-11-01T04:00:00+00:00"), ("b", 2, "2026-11-01T04:00:00.5Z"), ("c", 3, None)])
    assert tracking.next_watermark(batch, "updated_at", None) == "2026-11-01T04:00:00.5Z"
    # a source that stores naive UTC, or nanoseconds
    batch = _batch([("a", 1, "2026-11-01T04:00:00"), ("b", 2, "2026-11-01 03:59:59.999999999+00:00")])
    assert tracking.next_watermark(batch, "updated_at", None) == "2026-11-01T04:00:00"
