"""Reading CDR files against their source's declared profile: the corpus of good files reads, every bad one is
refused naming the file, the line and the field."""
from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from ledgerlink.errors import BadFileError, ConfigurationError
from ledgerlink.usage.profiles import BRIDGE_PROFILES, FileProfile, period_bounds, profile_for, read_cdr_file
from tests.support.usage_world import SEMICOLON_DMY, call, cdr_bytes

UTF8, CP1251 = BRIDGE_PROFILES
CP1254 = FileProfile("Turkish bridge", "tr_*.csv", "cp1254")


def read(tmp_path, data: bytes, profile=UTF8, name="cdr_BR01_20261103.utf-8.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return read_cdr_file(path, profile, name)


def refused(tmp_path, data: bytes, profile=UTF8, name="cdr_BR01_20261103.utf-8.csv") -> BadFileError:
    with pytest.raises(BadFileError) as caught:
        read(tmp_path, data, profile, name)
    assert str(caught.value).startswith(name), "the message names the file first"
    return caught.value


def test_a_clean_file_reads_with_lines_periods_and_utc_times(tmp_path):
    frame = read(tmp_path, cdr_bytes([call(1, "C1", "2026-11-01T01:30:00+03:00", "61"), call(2, "C2")]))
    assert frame["line"].tolist() == [2, 3]
    assert frame["started_at"].tolist() == ["2026-10-31T22:30:00+00:00", "2026-11-03T07:00:00+00:00"]
    assert frame["period"].tolist() == ["2026-11", "2026-11"], "the period is the month in billing's zone (UTC+3)"
    assert frame["file_period"].unique().tolist() == ["2026-11"]
    assert frame["duration_seconds"].tolist() == [61, 600] and frame["participants"].tolist() == [3, 3]


def test_a_byte_order_mark_is_allowed_in_utf8(tmp_path):
    frame = read(tmp_path, cdr_bytes([call(1, "C1")], bom=True))
    assert frame["call_id"].tolist() == ["BR01-00001"]


@pytest.mark.parametrize("profile, encoding, bridge", [(CP1251, "cp1251", "МСК-1"), (CP1254, "cp1254", "İST-Ş1")])
def test_single_byte_code_pages_read_as_declared(tmp_path, profile, encoding, bridge):
    name = "tr_20261103.csv" if encoding == "cp1254" else "cdr_BR02_20261103.cp1251.csv"
    frame = read(tmp_path, cdr_bytes([call(1, "C1", bridge=bridge)], encoding=encoding), profile, name)
    assert frame["bridge_id"].tolist() == [bridge]


def test_semicolons_comma_decimals_and_day_month_year_times(tmp_path):
    rows = [call(1, "C1", "03.11.2026 10:00:00", "754,5"), call(2, "C1", "01.11.2026 00:30:00", "60,0")]
    frame = read(tmp_path, cdr_bytes(rows, encoding="cp1254", separator=";"), SEMICOLON_DMY, "semi_20261103.csv")
    assert frame["duration_seconds"].tolist() == [755, 60], "a started second is billed"
    assert frame["started_at"].tolist() == ["2026-11-03T07:00:00+00:00", "2026-10-31T21:30:00+00:00"]
    assert frame["period"].tolist() == ["2026-11", "2026-11"]


def test_a_truncated_file_names_its_last_line(tmp_path):
    data = cdr_bytes([call(1, "C1"), call(2, "C1")])
    error = refused(tmp_path, data[:-10])
    assert error.line == 3 and "truncated" in str(error)


def test_cp1251_bytes_declared_utf8_are_refused_naming_the_line(tmp_path):
    error = refused(tmp_path, cdr_bytes([call(1, "C1"), call(2, "C1", bridge="МСК-1")], encoding="cp1251"))
    assert error.line == 3 and "is not utf-8" in str(error)


def test_utf8_text_declared_cp1251_is_refused(tmp_path):
    error = refused(tmp_path, cdr_bytes([call(1, "C1", bridge="МСК-1")]), CP1251, "cdr_BR02_20261103.cp1251.csv")
    assert "the text is UTF-8" in str(error)


def test_another_newline_is_refused_naming_the_line(tmp_path):
    data = cdr_bytes([call(1, "C1"), call(2, "C1")]).replace(b"\r\n", b"\n", 2)
    assert refused(tmp_path, data).line == 1
    error = refused(tmp_path, cdr_bytes([call(1, "C1")]), FileProfile("lf", "*", "utf-8", newline="\n"))
    assert "CRLF" in str(error)


def test_another_separator_or_header_is_refused_as_the_header(tmp_path):
    error = refused(tmp_path, cdr_bytes([call(1, "C1")], separator=";"))
    assert (error.line, error.field) == (1, "header")
    columns = ("call_id", "customer_ref", "started_at", "ended_at", "duration_seconds", "participants", "dial_in_number")
    assert "missing ['bridge_id']" in str(refused(tmp_path, cdr_bytes([call(1, "C1")], columns=columns)))


def test_a_row_with_a_field_too_many_is_refused_naming_its_line(tmp_path):
    data = cdr_bytes([call(1, "C1"), call(2, "C1")]).replace(b"+74950000000\r\n", b"+74950000000,extra\r\n", 2)
    error = refused(tmp_path, data)
    assert error.line == 2 and "9 field(s) where the header has 8" in str(error)


@pytest.mark.parametrize("field, value, problem", [
    ("started_at", "31.02.2026 25:61", "is not a time"),
    ("started_at", "2026-11-03T10:00:00", "is not a time"),  # no offset: refused, never guessed
    ("ended_at", "yesterday", "is not a time"),
    ("duration_seconds", "twelve", "is not a number of seconds"),
    ("duration_seconds", "12,5", "is not a number of seconds"),  # a comma where the profile says '.'
    ("participants", "3.0", "is not a whole number"),
])
def test_a_value_that_does_not_parse_names_line_and_field(tmp_path, field, value, problem):
    error = refused(tmp_path, cdr_bytes([call(1, "C1"), call(2, "C1"), call(3, "C1", **{field: value})]))
    assert (error.line, error.field) == (4, field) and problem in str(error)


def test_an_empty_file_and_a_name_without_its_day_are_refused(tmp_path):
    assert "empty" in str(refused(tmp_path, b""))
    with pytest.raises(BadFileError, match="carries no calendar day"):
        read(tmp_path, cdr_bytes([call(1, "C1")]), UTF8, "cdr_BR01_2026.utf-8.csv")


def test_profiles_are_chosen_by_name_and_checked_when_declared():
    assert profile_for("cdr_BR02_20261031.cp1251.csv", BRIDGE_PROFILES) is CP1251
    assert profile_for("notes.txt", BRIDGE_PROFILES) is None
    with pytest.raises(ConfigurationError, match="must name their zone"):
        FileProfile("x", "*", "utf-8", date_style="dmy")
    with pytest.raises(ConfigurationError, match="encoding 'latin-1'"):
        FileProfile("x", "*", "latin-1")


def test_period_bounds_are_billing_zone_midnights_in_utc():
    assert period_bounds("2026-12") == ("2026-11-30T21:00:00+00:00", "2026-12-31T21:00:00+00:00")
    assert period_bounds("2026-01", timezone(timedelta(0))) == ("2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00")


def test_a_file_read_in_blocks_gives_the_same_calls_with_lines_counted_across_blocks(tmp_path):
    from ledgerlink.usage.profiles import cdr_blocks

    rows = [call(i, f"C{i % 3}", duration=f"{60 + i}") for i in range(1, 41)]
    path = tmp_path / "cdr_BR01_20261103.utf-8.csv"
    path.write_bytes(cdr_bytes(rows))
    blocks = list(cdr_blocks(path, UTF8, path.name, block_bytes=300))
    assert len(blocks) > 5 and max(len(b) for b in blocks) < 10, "each block holds a few calls, not the file"
    whole = read(tmp_path, cdr_bytes(rows))
    joined = __import__("pandas").concat(blocks, ignore_index=True)
    assert joined["line"].tolist() == list(range(2, 42)) == whole["line"].tolist()
    assert joined.drop(columns=["line"]).equals(whole.drop(columns=["line"]))


def test_a_bad_value_in_a_later_block_names_its_line_in_the_file(tmp_path):
    from ledgerlink.usage.profiles import cdr_blocks

    rows = [call(i, "C1") for i in range(1, 31)]
    rows[27]["participants"] = "many"
    path = tmp_path / "cdr_BR01_20261103.utf-8.csv"
    path.write_bytes(cdr_bytes(rows))
    blocks = cdr_blocks(path, UTF8, path.name, block_bytes=300)
    first = next(blocks)
    assert first["line"].iloc[0] == 2
    with pytest.raises(BadFileError, match="line 29, field 'participants': 'many' is not a whole number"):
        list(blocks)
