"""What a CDR file source declares (its profile), and reading a file against it.

A file that does not match its profile fails loudly with :class:`~ledgerlink.errors.BadFileError`, naming the
file, the line and the field: bytes that do not decode, another newline, a header that is not the declared one, a
row with too many or too few fields, a time or number that does not parse, a last line without its line end (a
truncated file). Nothing of such a file is loaded. Values that parse but are wrong (a negative duration, an
unknown account) are the gate's business, not this module's.

The bytes are checked in one streaming pass (decoding, newlines, the end), then parsed by Arrow's CSV reader in
blocks, every column as text, and converted column by column: no Python per row, and no more of the file in memory
than a block (:func:`cdr_blocks`).
"""
from __future__ import annotations

import codecs
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path

from ledgerlink.errors import BadFileError, ConfigurationError
from ledgerlink.usage import PERIOD_ZONE

CDR_COLUMNS = ("call_id", "bridge_id", "customer_ref", "started_at", "ended_at", "duration_seconds", "participants",
               "dial_in_number")
ENCODINGS = {"utf-8": "utf8", "cp1251": "cp1251", "cp1254": "cp1254"}  # ours -> Arrow's (Python codecs)
DATE_STYLES = {"iso": None, "dmy": "%d.%m.%Y %H:%M:%S"}
NEWLINES = {"\r\n": "CRLF", "\n": "LF"}
BLOCK = 1 << 20
PARSE_BLOCK = 1 << 20  # what Arrow's CSV reader parses at a time (it reads 32 of them ahead)


@dataclass(frozen=True)
class FileProfile:
    """One file source's declared format.

    ``pattern``: the data files it covers (fnmatch); ``encoding``: ``utf-8`` (with or without a byte-order mark),
    ``cp1251`` or ``cp1254``; ``separator``: ``,`` or ``;``; ``decimal``: ``.`` or ``,`` (durations may carry
    fractions of a second); ``date_style``: ``iso`` (``2026-11-01T09:15:02+03:00``, the offset written) or ``dmy``
    (``01.11.2026 09:15:02``, in ``zone``); ``newline``: ``\\r\\n`` or ``\\n``; ``name_day``: the regular expression
    finding the file's day (``YYYYMMDD``) in its name, which names the billing period its calls belong to;
    ``checksum``: a ``<name>.sha256`` file (sha256sum format) must stand beside the data before it is taken.
    """

    name: str
    pattern: str
    encoding: str
    separator: str = ","
    decimal: str = "."
    date_style: str = "iso"
    newline: str = "\r\n"
    zone: tzinfo | None = None
    name_day: str = r"_(\d{8})\."
    checksum: bool = True
    columns: tuple[str, ...] = CDR_COLUMNS

    def __post_init__(self) -> None:
        problems = []
        if self.encoding not in ENCODINGS:
            problems.append(f"encoding {self.encoding!r} is not one of {sorted(ENCODINGS)}")
        if self.separator not in (",", ";"):
            problems.append(f"separator {self.separator!r} is not ',' or ';'")
        if self.decimal not in (".", ","):
            problems.append(f"decimal mark {self.decimal!r} is not '.' or ','")
        if self.decimal == self.separator:
            problems.append("the decimal mark and the separator are the same")
        if self.date_style not in DATE_STYLES:
            problems.append(f"date style {self.date_style!r} is not one of {sorted(DATE_STYLES)}")
        if self.date_style == "dmy" and self.zone is None:
            problems.append("DD.MM.YYYY times carry no offset: the profile must name their zone")
        if self.newline not in NEWLINES:
            problems.append("newline must be CRLF or LF")
        if problems:
            raise ConfigurationError(f"file profile {self.name!r}: " + "; ".join(problems))

    def covers(self, file_name: str) -> bool:
        return fnmatch.fnmatchcase(file_name, self.pattern)

    def period_of(self, file_name: str) -> str:
        """The billing period (``YYYY-MM``) the file's name gives it."""
        found = re.search(self.name_day, file_name)
        try:
            return date(*map(int, (found.group(1)[:4], found.group(1)[4:6], found.group(1)[6:8]))).strftime("%Y-%m")
        except (AttributeError, ValueError) as e:
            raise BadFileError(file_name, f"the name carries no calendar day (YYYYMMDD) where profile {self.name!r} "
                                           f"expects one", field="file name") from e


# The conference bridge's two drops (include/sandbox/bridge.py describes them as the vendor documents them): the
# encoding token in the name is the only place the encoding is declared.
BRIDGE_PROFILES: tuple[FileProfile, ...] = (
    FileProfile("bridge, UTF-8", "cdr_*.utf-8.csv", "utf-8"),
    FileProfile("bridge, Windows-1251", "cdr_*.cp1251.csv", "cp1251"),
)


def profile_for(file_name: str, profiles: Sequence[FileProfile]) -> FileProfile | None:
    """The first profile covering the name, or None (a file no source declares)."""
    return next((p for p in profiles if p.covers(file_name)), None)


def check_bytes(path: Path, profile: FileProfile, file_name: str) -> int:
    """The file decodes in the profile's encoding, uses its newline, has a header and ends with a line end;
    returns its line count. One streaming pass, flat memory."""
    codec = "utf-8-sig" if profile.encoding == "utf-8" else profile.encoding
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    # Text in a single-byte code page that is also valid UTF-8 with letters beyond ASCII is UTF-8: Cyrillic or
    # Turkish in cp1251/cp1254 practically never forms valid UTF-8 sequences, and reading it so would garble it.
    utf8_check = None if profile.encoding == "utf-8" else codecs.getincrementaldecoder("utf-8")(errors="strict")
    utf8_valid, non_ascii = True, False
    lines, previous, size = 0, b"", 0
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            if size == 0 and profile.encoding != "utf-8" and block.startswith(codecs.BOM_UTF8):
                raise BadFileError(file_name, f"starts with a UTF-8 byte-order mark: the file is UTF-8, profile "
                                               f"{profile.name!r} declares {profile.encoding}", line=1)
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                line = lines + block[:e.start].count(b"\n") + 1
                raise BadFileError(file_name, f"byte 0x{block[e.start]:02x} is not {profile.encoding} (profile "
                                               f"{profile.name!r})", line=line) from e
            if utf8_check is not None and utf8_valid:
                non_ascii = non_ascii or not block.isascii()
                try:
                    utf8_check.decode(block)
                except UnicodeDecodeError:
                    utf8_valid = False
            _check_newlines(block, previous, lines, profile, file_name)
            lines += block.count(b"\n")
            size += len(block)
            previous = block[-1:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise BadFileError(file_name, f"ends inside a {profile.encoding} character: the file is truncated",
                            line=lines + 1) from e
    if utf8_check is not None and utf8_valid and non_ascii:
        raise BadFileError(file_name, f"the text is UTF-8, profile {profile.name!r} declares {profile.encoding}")
    if size == 0:
        raise BadFileError(file_name, "the file is empty (not even a header)", line=1)
    if previous != b"\n":
        raise BadFileError(file_name, "the last line has no line end: the file is truncated (or was taken while "
                                       "still being written)", line=lines + 1)
    return lines


def _check_newlines(block: bytes, previous: bytes, lines_before: int, profile: FileProfile, file_name: str) -> None:
    if profile.newline == "\r\n":
        bare = block.count(b"\n") - block.count(b"\r\n") - (1 if previous == b"\r" and block.startswith(b"\n") else 0)
        if bare:
            at = next(i for i in range(len(block)) if block[i] == 10 and (block[i - 1] != 13 if i else previous != b"\r"))
            raise BadFileError(file_name, f"a line ends in LF alone; profile {profile.name!r} declares CRLF",
                                line=lines_before + block[:at].count(b"\n") + 1)
    elif b"\r\n" in block or (previous == b"\r" and block.startswith(b"\n")):
        at = max(block.find(b"\r\n"), 0)
        raise BadFileError(file_name, f"a line ends in CRLF; profile {profile.name!r} declares LF",
                            line=lines_before + block[:at].count(b"\n") + 1)


def read_cdr_file(path: Path | str, profile: FileProfile, file_name: str, *, period_zone: tzinfo = PERIOD_ZONE):
    """The file's calls as one DataFrame (:func:`cdr_blocks` concatenated: for files that fit in memory)."""
    import pandas as pd

    frames = list(cdr_blocks(path, profile, file_name, period_zone=period_zone))
    if frames:
        return pd.concat(frames, ignore_index=True)
    frame = pd.DataFrame({c: [] for c in ("source_file", "line", *profile.columns, "period", "file_period")})
    return frame


def check_file(path: Path | str, profile: FileProfile, file_name: str) -> str:
    """The file's bytes and header match the profile (one streaming pass, flat memory); returns the billing
    period its name gives. Raises :class:`BadFileError` naming the file, line and field."""
    file_period = profile.period_of(file_name)
    check_bytes(Path(path), profile, file_name)
    _check_header(Path(path), profile, file_name)
    return file_period


def cdr_blocks(path: Path | str, profile: FileProfile, file_name: str, *, period_zone: tzinfo = PERIOD_ZONE,
               block_bytes: int = 16 << 20, checked: bool = False):
    """The file's calls, block by block (about ``block_bytes`` of the file each: memory stays flat whatever the
    file's size), each a DataFrame: ``source_file``, ``line`` (its line in the file), the CDR's columns
    (``started_at`` as ISO 8601 UTC text, durations rounded up to whole seconds, counts as integers), ``period``
    (the month the call started in ``period_zone``) and ``file_period`` (the month the file's name gives).
    Raises :class:`BadFileError` naming the file, line and field where it does not match the profile: the bytes
    and the header before the first block (unless ``checked``: :func:`check_file` ran), a row or value at the
    block that holds it (a caller loading blocks as they come does so in one transaction)."""
    import pyarrow as pa
    import pyarrow.csv as pv

    path = Path(path)
    file_period = check_file(path, profile, file_name) if not checked else profile.period_of(file_name)
    invalid: list = []

    def on_invalid_row(row) -> str:
        invalid.append(row)
        return "skip"

    # Arrow's streaming reader reads ahead up to 32 of its blocks on an I/O thread (measured: 580 MB held at the
    # start of a 548 MB file read in 16 MB blocks): it parses small blocks, gathered here into ours.
    reader = pv.open_csv(
        path,
        read_options=pv.ReadOptions(use_threads=False, encoding=ENCODINGS[profile.encoding],
                                    block_size=min(block_bytes, PARSE_BLOCK)),
        parse_options=pv.ParseOptions(delimiter=profile.separator, newlines_in_values=False, ignore_empty_lines=False,
                                      invalid_row_handler=on_invalid_row),
        convert_options=pv.ConvertOptions(column_types={c: pa.string() for c in profile.columns},
                                          strings_can_be_null=True, quoted_strings_can_be_null=True))
    offset, pending, pending_bytes = 0, [], 0

    def block():
        table = pa.Table.from_batches(pending).combine_chunks()
        frame = _convert(table, offset, profile, file_name, period_zone)
        frame.insert(0, "source_file", file_name)
        frame["file_period"] = file_period
        return frame, table.num_rows

    for batch in reader:
        if invalid:
            row = invalid[0]
            raise BadFileError(file_name, f"{row.actual_columns} field(s) where the header has "
                                          f"{row.expected_columns}: {row.text[:120]!r}", line=row.number)
        if batch.num_rows:
            pending.append(batch)
            pending_bytes += batch.nbytes
        if pending_bytes >= block_bytes:
            frame, rows = block()
            pending, pending_bytes = [], 0
            yield frame
            offset += rows
    if pending and not invalid:
        frame, _ = block()
        yield frame
    if invalid:
        row = invalid[0]
        raise BadFileError(file_name, f"{row.actual_columns} field(s) where the header has {row.expected_columns}: "
                                       f"{row.text[:120]!r}", line=row.number)


def _check_header(path: Path, profile: FileProfile, file_name: str) -> None:
    with open(path, "rb") as handle:
        first = handle.readline(64 * 1024)
    text = first.decode("utf-8-sig" if profile.encoding == "utf-8" else profile.encoding).rstrip("\r\n")
    found = tuple(name.strip().strip('"') for name in text.split(profile.separator))
    if found != profile.columns:
        missing = [c for c in profile.columns if c not in found]
        extra = [c for c in found if c not in profile.columns]
        detail = (f"missing {missing}" if missing else "") + ("; " if missing and extra else "") + \
                 (f"unexpected {extra}" if extra else "") or f"the columns are in another order: {list(found)}"
        raise BadFileError(file_name, f"the header is not the declared one ({detail}; separator "
                                       f"{profile.separator!r})", line=1, field="header")


def _first_bad(raw, parsed) -> int | None:
    """Index of the first value present in ``raw`` that did not convert, or None."""
    import pyarrow.compute as pc

    bad = pc.and_(pc.is_valid(raw), pc.is_null(parsed))
    if not pc.any(bad).as_py():
        return None
    return pc.index(bad, True).as_py()


def _convert(batch, offset: int, profile: FileProfile, file_name: str, period_zone: tzinfo):
    """One parsed block to typed columns; the first value that does not parse raises, naming its line."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    def fail(column: str, index: int, problem: str):
        value = batch.column(column)[index].as_py()
        raise BadFileError(file_name, f"{value!r} {problem}", line=offset + index + 2, field=column)

    out: dict = {"line": np.arange(offset + 2, offset + 2 + batch.num_rows, dtype=np.int64)}
    for column in profile.columns:
        out[column] = batch.column(column)
    for column in ("started_at", "ended_at"):
        out[column] = _timestamps(batch.column(column), profile, lambda i, c=column: fail(
            c, i, "is not a time in the profile's style " + ("(ISO 8601 with its offset)" if profile.date_style == "iso"
                                                           else "(DD.MM.YYYY HH:MM:SS)")))
    duration = batch.column("duration_seconds")
    if profile.decimal == ",":
        duration = pc.replace_substring(duration, ",", ".")
    duration = pc.utf8_trim_whitespace(duration)
    bad = _first_bad(duration, pc.if_else(pc.match_substring_regex(duration, r"^-?[0-9]+(\.[0-9]+)?$"), duration, None))
    if bad is not None:
        fail("duration_seconds", bad, f"is not a number of seconds (decimal mark {profile.decimal!r})")
    whole = pc.cast(pc.replace_substring_regex(duration, r"\..*$", ""), pa.int64())
    # A started second is billed: fractions round up (down for a negative value, which the gate then refuses).
    fraction = pc.cast(pc.match_substring_regex(duration, r"\.[0-9]*[1-9]"), pa.int64())
    negative = pc.starts_with(duration, "-")
    out["duration_seconds"] = pc.if_else(negative, pc.subtract(whole, fraction), pc.add(whole, fraction))
    participants = pc.utf8_trim_whitespace(batch.column("participants"))
    bad = _first_bad(participants, pc.if_else(pc.match_substring_regex(participants, r"^-?[0-9]+$"), participants, None))
    if bad is not None:
        fail("participants", bad, "is not a whole number of participants")
    out["participants"] = pc.cast(participants, pa.int64())
    started = out["started_at"]
    local = pc.add(started, pa.scalar(int(period_zone.utcoffset(None).total_seconds()), pa.duration("s")))
    out["period"] = pc.utf8_slice_codeunits(_text(local), 0, 7)
    out["started_at"] = _utc_text(started)
    out["ended_at"] = _utc_text(out["ended_at"])
    table = pa.table(out)
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype("pyarrow")}.get)
    frame["line"] = frame["line"].astype("int64")
    return frame


def _text(moments):
    """UTC times as ``YYYY-MM-DD HH:MM:SS`` (through a naive cast: Arrow's strftime, and its cast of a zoned time
    to text, cost five times as much)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pc.cast(moments, pa.timestamp("s")), pa.string())


def _utc_text(moments):
    """UTC times as the usage rows write them: ``2026-11-03T07:00:00+00:00``."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(pc.replace_substring(_text(moments), " ", "T"), "+00:00", "")


def _timestamps(text, profile: FileProfile, fail):
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(text)
    if profile.date_style == "iso":
        parsed = pc.strptime(text, format="%Y-%m-%dT%H:%M:%S%z", unit="s", error_is_null=True)
    else:
        naive = pc.strptime(text, format=DATE_STYLES["dmy"], unit="s", error_is_null=True)
        shift = int(profile.zone.utcoffset(None).total_seconds())
        parsed = pc.cast(pc.subtract(naive, pa.scalar(shift, pa.duration("s"))), pa.timestamp("s", tz="UTC"))
    bad = _first_bad(text, parsed)
    if bad is not None:
        fail(bad)
    return parsed


def utc_text(moment: datetime) -> str:
    """An aware time as the usage rows write it (ISO 8601, UTC, offset written)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def period_bounds(period: str, zone: tzinfo = PERIOD_ZONE) -> tuple[str, str]:
    """A period's first instant and the next period's, as usage-row UTC text (compare as text)."""
    year, month = map(int, period.split("-"))
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return utc_text(start), utc_text(end)


def previous_period(period: str) -> str:
    year, month = map(int, period.split("-"))
    first = date(year, month, 1) - timedelta(days=1)
    return f"{first:%Y-%m}"
